"""Per-request log context and one structured access line per request.

A pure ASGI middleware (not ``BaseHTTPMiddleware``, which would sit between the app
and a streamed body): it tags every log line of the request, including those of a
turn's relay task, which inherits the context, with the request id, and writes one
line when the response ends: method, path, status, duration and the user id hashed.

It also reads the Lambda invocation context Lambda Web Adapter forwards, once, when it
is to be trusted (``trust_lambda_context``; lambda_context.py), and keeps it in
``scope["state"]`` for the routes.

:class:`ChatRelayAPI` is the app's FastAPI: it keeps the server's own ``send`` in the scope
(``RAW_SEND``), so that a stream's body messages skip the per-message wrappers of every
middleware (Starlette's error and exception middlewares, this one, CORS); the response's
start message still passes all of them (streaming/response.py). The middlewares of this
app look at the start message only; one that must see body bytes (compression, say) has no
place in front of the stream routes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatrelay.api import lambda_context
from chatrelay.observability import hash_user_id, logger
from chatrelay.streaming import RAW_SEND

_REQUEST_ID_HEADERS = (b"x-amzn-requestid", b"x-amz-request-id", b"x-request-id")
_REQUEST_ID_NAMES = frozenset(_REQUEST_ID_HEADERS)


def _request_id(scope: Scope, invocation: dict | None) -> str:
    headers = {}  # only the candidates (the last of each, as dict() of all headers kept it)
    for name, value in scope.get("headers") or ():
        if name in _REQUEST_ID_NAMES:
            headers[name] = value
    for name in _REQUEST_ID_HEADERS:
        if headers.get(name):
            return headers[name].decode("latin-1")[:128]
    if invocation is not None and isinstance(invocation.get("request_id"), str) and invocation["request_id"]:
        return invocation["request_id"][:128]
    aws_event = scope.get("aws.context")  # Mangum puts the Lambda context here
    if aws_event is not None and getattr(aws_event, "aws_request_id", None):
        return str(aws_event.aws_request_id)
    return os.urandom(16).hex()  # uuid4().hex's length and alphabet; uuid4() cost ~40 µs a request (cold)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, trust_lambda_context: bool = False) -> None:
        self.app = app
        self.trust_lambda_context = trust_lambda_context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        invocation = lambda_context.context_from_scope(scope, trusted=self.trust_lambda_context)
        scope.setdefault("state", {})[lambda_context.STATE_KEY] = invocation
        request_id = _request_id(scope, invocation)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            await send(message)

        logger.thread_safe_append_keys(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            user_id = (scope.get("state") or {}).get("user_id")
            logger.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "user": hash_user_id(user_id) if user_id else None,
                },
            )
            logger.thread_safe_remove_keys(["request_id"])


_NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


class ChatRelayAPI(FastAPI):
    """FastAPI that hands the server's ``send`` to the stream responses (see the module docstring).

    FastAPI's OpenTelemetry bridge is off: chatrelay traces with Powertools (chatrelay/tracing.py)
    and configures no OpenTelemetry provider, yet the bridge looked the global providers up before
    every request (about 35 µs ahead of a stream's upstream request).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("telemetry", _NO_TELEMETRY)
        super().__init__(**kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)
