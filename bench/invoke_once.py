"""Import a Mangum entry point and answer one API Gateway event (GET /healthz), as a cold Lambda would."""

import importlib
import json
import sys

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


sys.path.insert(0, ".")
module = importlib.import_module(sys.argv[1])
response = module.handler(EVENT, Context())
assert response["statusCode"] == 200, response
print(json.dumps(response["statusCode"]))
