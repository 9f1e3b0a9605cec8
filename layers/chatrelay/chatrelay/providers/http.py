"""The HTTP vendor adapters' one boundary with httpx, and the SSE decoder for vendors' streams.

* :func:`new_client`: the pooled ``AsyncClient`` each adapter owns (one per provider,
  created once per process).
* :func:`upstream_errors`: httpx's exceptions as members of the error tree, in the
  spirit of httpx's own ``map_httpcore_exceptions``; :func:`streaming` sends a request
  under it and closes the response however the stream ends.
* :func:`read_json`: a bounded read of a (usually error) body; :func:`status_error`:
  the table from an HTTP error status to an error class; :func:`event_object`: one
  streamed event's JSON.
* :class:`SSEDecoder` and :func:`iter_sse`: the SSE wire format (WHATWG HTML,
  "Server-sent events"), decoder side (encoding towards clients is sse-starlette's).

Decoder deviation: ``retry:`` is parsed and ignored, since a server-side consumer does
not reconnect on the vendor's schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from chatrelay import errors

MAX_BODY = 64 * 1024
"""What :func:`read_json` reads at most (and a little more): enough for any error object."""
POOL_LIMITS = httpx.Limits(max_connections=4000, max_keepalive_connections=200)
DRAIN_SECONDS = 0.5

STATUS_ERRORS: dict[int, type[errors.UpstreamError]] = {
    401: errors.UpstreamAuthError,
    403: errors.UpstreamAuthError,
    429: errors.UpstreamRateLimited,
}
"""HTTP error statuses with an error class of their own; any other is an ``UpstreamHTTPError``
(whose ``retryable`` follows the status)."""


def new_client(connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(read_timeout, connect=connect_timeout), limits=POOL_LIMITS)


@contextlib.contextmanager
def upstream_errors(name: str, *, started: bool = False) -> Iterator[None]:
    """Raise httpx's timeouts and transport errors inside the block as the error tree's.

    ``started``: the response has begun, so a broken connection is a disconnect (the
    answer so far is partial), not an unreachable vendor.
    """
    try:
        yield
    except httpx.TimeoutException as exc:
        raise errors.UpstreamTimeout(f"{name}: {'read' if started else 'connecting'} timed out") from exc
    except httpx.TransportError as exc:
        cls = errors.UpstreamDisconnected if started else errors.UpstreamUnavailable
        raise cls(f"{name}: {type(exc).__name__}") from exc


@contextlib.asynccontextmanager
async def streaming(client: httpx.AsyncClient, request: httpx.Request, name: str) -> AsyncIterator[httpx.Response]:
    """The streaming response to ``request``, with httpx's errors mapped while it is sent and read."""
    with upstream_errors(name):
        response = await client.send(request, stream=True)
    try:
        with upstream_errors(name, started=True):
            yield response
    finally:
        # Closing a response not read to its end drops the connection: the vendor stops generating.
        await response.aclose()


async def read_json(response: httpx.Response, otherwise: Callable[[bytes], Any]) -> Any:
    """The body parsed as JSON, or ``otherwise(raw)`` when it is not JSON; at most about ``MAX_BODY`` bytes."""
    raw = b""
    async for piece in response.aiter_bytes():
        raw += piece
        if len(raw) > MAX_BODY:
            break
    try:
        return json.loads(raw)
    except ValueError:
        return otherwise(raw)


def snippet(raw: bytes, size: int = 300) -> str:
    """The start of a body that is not JSON, for an error message."""
    return raw[:size].decode("utf-8", "replace")


def status_error(status: int, message: str, *, retry_after: str | None = None,
                 **details: object) -> errors.UpstreamError:
    """The error for an HTTP error status (see ``STATUS_ERRORS``); ``retry_after`` goes with a 429."""
    cls = STATUS_ERRORS.get(status, errors.UpstreamHTTPError)
    if cls is errors.UpstreamRateLimited:
        details["retryAfter"] = retry_after
    return cls(message, status=status, **details)


async def drain(rest: AsyncIterator[Any]) -> None:
    """Read a body to its end after the answer's last event (normally just the closing chunk), so
    httpx returns the connection to its pool and the next turn skips the TCP and TLS handshakes.
    A vendor that keeps the body open is not waited for long: the connection is dropped then."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in rest:
                pass


def event_object(name: str, data: str, what: str) -> dict[str, Any]:
    """An event's JSON object; anything else is the vendor's protocol error (``what``: the event, for the message)."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise errors.UpstreamProtocolError(f"{name}: malformed {what}") from exc
    if not isinstance(parsed, dict):
        raise errors.UpstreamProtocolError(f"{name}: {what} is not an object")
    return parsed


# --- SSE, decoder side ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SSEMessage:
    event: str = "message"
    data: str = ""
    id: str | None = None


class SSEDecoder:
    """Turns SSE lines into messages. Comments (``: keep-alive``) are dropped."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._seen_field = False

    def feed_line(self, line: str) -> SSEMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._seen_field = True
        elif name == "event":
            self._event = value
            self._seen_field = True
        elif name == "id" and "\0" not in value:
            self._id = value
        # "retry" and unknown fields are ignored, as the spec says.
        return None

    def flush(self) -> SSEMessage | None:
        """End of stream: the spec discards an incomplete event; we return it so a
        vendor that omits the final blank line still has its last event read."""
        return self._dispatch()

    def _dispatch(self) -> SSEMessage | None:
        if not self._seen_field:
            self._event = ""
            return None
        message = SSEMessage(event=self._event or "message", data="\n".join(self._data), id=self._id)
        self._event, self._data, self._seen_field = "", [], False
        return message


async def iter_sse(lines: AsyncIterable[str]) -> AsyncIterator[SSEMessage]:
    decoder = SSEDecoder()
    async for line in lines:
        message = decoder.feed_line(line)
        if message is not None:
            yield message
    message = decoder.flush()
    if message is not None:
        yield message
