"""API function: the non-streaming routes through Mangum (which buffers; never streams)."""

import gc

# As in functions/stream/main.py: no collection during the imports; create_entry_app()
# freezes what start-up built and turns the collector back on.
gc.disable()

from mangum import Mangum

from chatrelay import snapshot
from chatrelay.api.app import create_entry_app
from chatrelay.settings import get_settings
from chatrelay.tracing import get_tracer, traced

# Only the buffered routes: API Gateway sends the streaming ones to the streaming function.
handler = traced(Mangum(create_entry_app(streaming=False), lifespan="off"), get_tracer(get_settings()))
# SnapStart: this process is the Python runtime's own, so its hooks reach us (the streaming
# function's uvicorn gets them from Lambda Web Adapter instead: create_app serves its paths).
snapshot.register_runtime_hooks()
