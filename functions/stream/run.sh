#!/bin/bash
# Lambda Web Adapter (/opt/bootstrap, from its layer) starts this script and proxies
# invocations to uvicorn on $AWS_LWA_PORT (the adapter's own fallbacks: PORT, then 8080),
# streaming the response (AWS_LWA_INVOKE_MODE=response_stream).
PATH=$PATH:$LAMBDA_TASK_ROOT/bin \
PYTHONPATH=$PYTHONPATH:/opt/python:$LAMBDA_RUNTIME_DIR \
exec python -m uvicorn --host 127.0.0.1 --port="${AWS_LWA_PORT:-${PORT:-8080}}" --no-access-log main:app
