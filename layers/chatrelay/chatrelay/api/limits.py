"""Input limits enforced before a route runs: body size and JSON nesting (the prompt's own rules
are in ``chatrelay/turns/validation.py``).

``RequestLimitsMiddleware`` is a pure ASGI middleware (a ``BaseHTTPMiddleware``
would sit between the app and a streamed response). It reads the request body
itself, counting bytes as they arrive, so a body larger than ``max_body_bytes``
is refused with 413 ``payload_too_large`` whether or not a ``Content-Length`` was
sent (a declared length over the limit is refused before reading anything), and
a JSON body nested deeper than ``max_json_depth`` with 422 ``invalid_request``
before any parser recurses into it. The whole body must arrive within
``body_read_timeout`` seconds, else 408 ``request_timeout`` and the connection is
closed: a client that declares a length and then stalls (or trickles) does not hold
a connection and a task forever. The app then reads the buffered body as
usual; later messages (``http.disconnect``) pass straight through, so streamed
responses still learn that their client left.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatrelay import errors

BODY = "chatrelay.body"
"""The scope key of the whole request body, once read here."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


class _TooLarge(Exception):
    """The body went past ``max_body_bytes`` while it was read."""


def json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    """Whether the JSON text ``body`` nests arrays/objects deeper than ``max_depth``."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False
    depth = 0
    for bracket in _BRACKETS.findall(_STRING.sub(b'""', body)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth = max(0, depth - 1)
    return False


async def _send_error(send: Send, status: int, body: dict[str, object], *, close: bool = False) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:  # the rest of the body may still come: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


ErrorBody = Callable[[str, int, str, str, dict[str, object]], dict[str, object]]
"""(path, status, code, message, extra fields) -> the error's body (app.py's ``error_body``)."""


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # FastAPI parses a body without a content type as JSON


class RequestLimitsMiddleware:
    def __init__(
        self, app: ASGIApp, *, error_body: ErrorBody, max_body_bytes: int, max_json_depth: int,
        body_read_timeout: float = 15.0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.body_read_timeout = body_read_timeout
        self.error_body = error_body

    def _refusal(self, scope: Scope, error: errors.ChatRelayError) -> dict[str, object]:
        fields = error.to_dict()
        code, message = str(fields.pop("code")), str(fields.pop("message"))
        return self.error_body(scope.get("path", ""), error.status_code, code, message, fields)

    def _too_large(self, scope: Scope) -> dict[str, object]:
        error = errors.PayloadTooLarge(f"the request body is larger than {self.max_body_bytes} bytes")
        return self._refusal(scope, error)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None if the client left; raises _TooLarge past ``max_body_bytes``."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    await _send_error(send, 413, self._too_large(scope))
                    return
        try:
            async with asyncio.timeout(self.body_read_timeout):
                body = await self._read_body(receive)
        except _TooLarge:
            await _send_error(send, 413, self._too_large(scope))
            return
        except TimeoutError:
            error = errors.RequestTimeout(f"the request body did not arrive within {self.body_read_timeout:g} s")
            await _send_error(send, 408, self._refusal(scope, error), close=True)
            return
        if body is None:
            return  # the client left before sending its body: nobody to answer
        if body and _is_json(scope) and json_depth_exceeds(body, self.max_json_depth):
            error = errors.InvalidRequest(f"JSON is nested deeper than {self.max_json_depth} levels", field="body")
            await _send_error(send, 422, self._refusal(scope, error))
            return
        scope[BODY] = body  # the fast routes' parsers read it here (api/fast_route.py)
        await self.app(scope, replay(body, receive), send)


def replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` with an already read body given once more first."""
    replayed = False

    async def again() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
