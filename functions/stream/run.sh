#!/bin/bash
# Lambda Web Adapter (/opt/bootstrap, from its layer) starts this script and proxies
# invocations to uvicorn on $AWS_LWA_PORT (the adapter's own fallbacks: PORT, then 8080),
# streaming the response (AWS_LWA_INVOKE_MODE=response_stream). main.py starts uvicorn itself
# (why: main.py).
PATH=$PATH:$LAMBDA_TASK_ROOT/bin \
PYTHONPATH=$PYTHONPATH:/opt/python:$LAMBDA_RUNTIME_DIR \
exec python "$(dirname "$0")/main.py"
