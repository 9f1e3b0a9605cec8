"""The Lambda invocation context that Lambda Web Adapter forwards as a header.

LWA serialises the invocation's context into ``x-amzn-lambda-context`` (JSON). Its
``deadline`` (epoch milliseconds; ``deadline_ms`` in some versions) tells how long
the function may still run, which a streaming turn needs so that it can end
cleanly as ``truncated`` before Lambda kills it.
"""

from __future__ import annotations

import json
import time

from starlette.requests import Request

HEADER = "x-amzn-lambda-context"


def remaining_seconds(request: Request) -> float | None:
    """Seconds left in this Lambda invocation, or None outside Lambda."""
    raw = request.headers.get(HEADER)
    if not raw:
        return None
    try:
        context = json.loads(raw)
        deadline_ms = context.get("deadline", context.get("deadline_ms"))
        return float(deadline_ms) / 1000.0 - time.time()
    except (ValueError, TypeError, AttributeError):
        return None


def request_deadline(request: Request, margin: float) -> float | None:
    """The ``time.monotonic()`` a turn started by this request must end by (None outside Lambda)."""
    remaining = remaining_seconds(request)
    return None if remaining is None else time.monotonic() + remaining - margin
