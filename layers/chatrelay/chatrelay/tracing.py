"""X-Ray subsegments for the buffered API function, only when tracing is on.

Switched by ``POWERTOOLS_TRACE_DISABLED`` (``Settings.trace_disabled``, true unless the
template's ``Tracing`` parameter says otherwise). Nothing tracing-related is imported while
it is off, so cold starts pay nothing. Powertools' Tracer needs the X-Ray SDK, which is
deliberately not in the layer (it pulls in a second botocore, ~25 MB): without it, tracing
stays at the platform level (the Lambda and API Gateway segments that ``Tracing: Active``
records anyway) and this module says so once in the log. Add ``aws-xray-sdk`` to
``layers/chatrelay/requirements.txt`` to get DynamoDB subsegments.

The streaming function is never traced here: the X-Ray SDK reads the trace id from its
process environment, which the uvicorn process behind Lambda Web Adapter receives once at
start, not per invocation.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from chatrelay.observability import SERVICE, logger
from chatrelay.settings import Settings

Handler = Callable[[dict, Any], dict]


def xray_sdk_available() -> bool:
    return importlib.util.find_spec("aws_xray_sdk") is not None


def get_tracer(settings: Settings, *, sdk_available: Callable[[], bool] = xray_sdk_available) -> Any | None:
    """A Powertools ``Tracer`` patching botocore only, or None when tracing is off or impossible."""
    if settings.trace_disabled:
        return None
    if not sdk_available():
        logger.info("tracing requested but aws-xray-sdk is not installed: platform-level X-Ray only")
        return None
    from aws_lambda_powertools import Tracer  # imported only when tracing is on

    # Only botocore: patch_all() would import every library the SDK knows about.
    return Tracer(service=SERVICE, patch_modules=("botocore",))


def traced(handler: Handler, tracer: Any | None) -> Handler:
    """``handler`` in a ``## handler`` subsegment; responses are never recorded (chat text)."""
    if tracer is None:
        return handler

    def handler_fn(event: dict, context: Any) -> dict:  # a named function: Mangum is an instance
        return handler(event, context)

    return tracer.capture_lambda_handler(handler_fn, capture_response=False, capture_error=True)
