"""The Lambda invocation context that Lambda Web Adapter forwards as a header.

LWA serialises the invocation's context into ``x-amzn-lambda-context`` (JSON),
replacing any header of that name the client sent. Its ``deadline`` (epoch
milliseconds; ``deadline_ms`` in some versions) tells how long the function may
still run, which a streaming turn needs so that it can end cleanly as
``truncated`` before Lambda kills it.

Outside LWA the header is just something a client typed: it is only read when
``CHATRELAY_TRUST_LAMBDA_CONTEXT`` is on (template.yaml turns it on for the
streaming function, the one behind LWA). Even then it is parsed once per request,
by :class:`~chatrelay.api.middleware.RequestContextMiddleware`, and only when it
is small and shallow: a bad header is ignored, never an error.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from starlette.requests import Request
from starlette.types import Scope

from chatrelay.api.limits import json_depth_exceeds

HEADER = "x-amzn-lambda-context"
MAX_BYTES = 16 * 1024
"""LWA's context is well under 4 KB (ids, ARN, memory, a client context of at most 3.5 KB)."""
MAX_DEPTH = 8
STATE_KEY = "lambda_context"
"""Where the parsed context is kept in ``scope["state"]`` (``request.state.lambda_context``)."""


def parse(raw: bytes | str | None) -> dict[str, Any] | None:
    """The header's JSON object, or None when absent, too large, too deep or not an object."""
    if not raw:
        return None
    data = raw.encode("latin-1", "replace") if isinstance(raw, str) else raw
    if len(data) > MAX_BYTES or json_depth_exceeds(data, MAX_DEPTH):
        return None
    try:
        context = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return context if isinstance(context, dict) else None


def context_from_scope(scope: Scope, *, trusted: bool) -> dict[str, Any] | None:
    """The forwarded context of this request when ``trusted`` (running behind LWA), else None."""
    if not trusted:
        return None
    for name, value in scope.get("headers") or ():
        if name == HEADER.encode():
            return parse(value)
    return None


def remaining_seconds(request: Request) -> float | None:
    """Seconds left in this Lambda invocation, or None outside Lambda (or untrusted)."""
    context = (request.scope.get("state") or {}).get(STATE_KEY)
    if not isinstance(context, dict):
        return None
    deadline_ms = context.get("deadline", context.get("deadline_ms"))
    if isinstance(deadline_ms, bool) or not isinstance(deadline_ms, (int, float)):
        return None
    if not math.isfinite(deadline_ms):  # JSON allows NaN and Infinity
        return None
    return float(deadline_ms) / 1000.0 - time.time()


def request_deadline(request: Request, margin: float) -> float | None:
    """The ``time.monotonic()`` a turn started by this request must end by (None outside Lambda)."""
    remaining = remaining_seconds(request)
    return None if remaining is None else time.monotonic() + remaining - margin
