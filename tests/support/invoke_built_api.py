"""Invoke the BUILT API function's Mangum handler with API Gateway events (run by python3.12).

Usage: python3.12 invoke_built_api.py <function dir> <layer python dir> <runtime dir> < events.json
Prints a JSON list of {name, statusCode, body, chatrelay_file}.
"""

import json
import sys

function_dir, layer_dir, runtime_dir = sys.argv[1:4]
sys.path[:0] = [function_dir, layer_dir, runtime_dir]

from app import handler  # noqa: E402

import chatrelay  # noqa: E402


class Context:
    function_name = "ApiFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"
    aws_request_id = "test-request"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


results = []
for name, event in json.load(sys.stdin):
    response = handler(event, Context())
    results.append({"name": name, "statusCode": response["statusCode"], "body": response.get("body"),
                    "chatrelay_file": chatrelay.__file__})
print(json.dumps(results))
