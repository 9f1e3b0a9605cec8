"""Where the app's start-up time goes (bench only): imports, the services, create_app().

Run from a function directory with the same interpreter and PYTHONPATH as the cold start
(and, as the entry points do, with the collector off while importing); prints one JSON line
of milliseconds. The first step imports what the bare FastAPI app imports too, so the second
is the app's own share.
"""

import gc
import json
import time

gc.disable()
t0 = time.perf_counter()
import fastapi  # noqa: F401  (what the bare app imports as well)

t1 = time.perf_counter()
from chatrelay.api.app import create_app
from chatrelay.api.services import Services
from chatrelay.settings import get_settings

t2 = time.perf_counter()
settings = get_settings()
services = Services.from_settings(settings)  # secrets, the DynamoDB client (its pool opens on first use)
t3 = time.perf_counter()
create_app(settings, services)
gc.freeze()
gc.enable()
t4 = time.perf_counter()
print(json.dumps({
    "import_fastapi": (t1 - t0) * 1000,
    "import_the_app": (t2 - t1) * 1000,
    "settings_and_services": (t3 - t2) * 1000,
    "create_app": (t4 - t3) * 1000,
}))
