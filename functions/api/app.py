"""API function: the non-streaming routes through Mangum (which buffers; never streams)."""

from mangum import Mangum

from chatrelay.api.app import create_entry_app
from chatrelay.settings import get_settings
from chatrelay.tracing import get_tracer, traced

handler = traced(Mangum(create_entry_app(), lifespan="off"), get_tracer(get_settings()))
