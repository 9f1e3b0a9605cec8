"""Import a Mangum entry point and answer one API Gateway event (GET /healthz), as a cold Lambda would.

``python invoke_once.py <module>`` from the function's directory; prints one JSON line:
``done_ns`` (``time.monotonic_ns()`` when the handler returned: CLOCK_MONOTONIC is
system-wide, so the parent subtracts its spawn time) and the process's peak RSS.
"""

import importlib
import json
import sys
import time
from pathlib import Path

EVENT = {
    "resource": "/healthz", "path": "/healthz", "httpMethod": "GET", "headers": {"Host": "x"},
    "multiValueHeaders": None, "queryStringParameters": None, "multiValueQueryStringParameters": None,
    "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
    "requestContext": {"resourcePath": "/healthz", "httpMethod": "GET", "path": "/live/healthz", "stage": "live",
                       "requestId": "r", "identity": {"sourceIp": "127.0.0.1"}},
}


class Context:
    aws_request_id = "r"
    function_name = "bench"
    memory_limit_in_mb = 512

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


sys.path.insert(0, ".")
module = importlib.import_module(sys.argv[1])
response = module.handler(EVENT, Context())
done_ns = time.monotonic_ns()
assert response["statusCode"] == 200, response
# VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
peak = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
            if line.startswith("VmHWM:"))
print(json.dumps({"done_ns": done_ns, "maxrss_kb": peak}))
