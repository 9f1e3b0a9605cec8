"""Where the app's start-up time goes (bench only): imports, the DynamoDB client, create_app().

Run from a function directory with the same interpreter and PYTHONPATH as the cold
start; prints one JSON line of milliseconds.
"""

import json
import time

t0 = time.perf_counter()
import botocore.session  # noqa: F401  (first: its own import cost; the store uses botocore, not boto3)

t1 = time.perf_counter()
from chatrelay.api.app import create_app
from chatrelay.api.services import Services
from chatrelay.settings import get_settings
from chatrelay.store.table import dynamodb_client

t2 = time.perf_counter()
settings = get_settings()
# The first client loads botocore's models; Services then reuses it (one client per process).
dynamodb_client(settings.dynamodb_endpoint_url, settings.aws_region, settings.storage_threads)
t3 = time.perf_counter()
services = Services.from_settings(settings)
create_app(settings, services)
t4 = time.perf_counter()
print(json.dumps({
    "import_botocore": (t1 - t0) * 1000,
    "import_app": (t2 - t1) * 1000,
    "first_dynamodb_client": (t3 - t2) * 1000,
    "services_and_create_app": (t4 - t3) * 1000,
}))
