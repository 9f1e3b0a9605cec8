"""The HTTP vendor adapters' one boundary with httpx, and the SSE decoder for vendors' streams.

* :func:`new_client`: the pooled ``AsyncClient`` each adapter owns (one per provider,
  created once per process), on the lean HTTP/1.1 transport of ``chatrelay/http1.py``, or on
  httpx's default one when the environment names a proxy.
* :func:`upstream_errors`: httpx's exceptions as members of the error tree, in the
  spirit of httpx's own ``map_httpcore_exceptions``; :func:`streaming` sends a request
  under it and closes the response however the stream ends.
* :func:`read_json`: a bounded read of a (usually error) body; :func:`status_error`:
  the table from an HTTP error status to an error class; :func:`event_object`: one
  streamed event's JSON.
* :class:`LineReader`, :func:`iter_lines`, :class:`SSEDecoder` and :func:`iter_sse`: the
  SSE wire format (WHATWG HTML, "Server-sent events"), decoder side (encoding towards
  clients is sse-starlette's).

Lines are split here, not by httpx: ``aiter_lines()`` splits as ``str.splitlines`` does,
also at U+2028, U+2029, U+0085, U+001C-U+001E, VT and FF. SSE lines end at CR, LF or
CRLF only, and U+2028, U+2029 and U+0085 are legal raw inside a JSON string, so httpx
would cut a vendor's chunk in two. Decoder deviation: ``retry:`` is parsed and ignored,
since a server-side consumer does not reconnect on the vendor's schedule.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import http.cookiejar
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import msgspec

from chatrelay import errors
from chatrelay.http1 import HTTP1Transport, proxies_configured

MAX_BODY = 64 * 1024
"""What :func:`read_json` reads at most (and a little more): enough for any error object."""
DRAIN_SECONDS = 0.5

STATUS_ERRORS: dict[int, type[errors.UpstreamError]] = {
    401: errors.UpstreamAuthError,
    403: errors.UpstreamAuthError,
    429: errors.UpstreamRateLimited,
}
"""HTTP error statuses with an error class of their own; any other is an ``UpstreamHTTPError``
(whose ``retryable`` follows the status)."""


def new_client(connect_timeout: float, read_timeout: float) -> httpx.AsyncClient:
    # A proxy from the environment: httpx's own transport, which routes through it (and honours NO_PROXY).
    transport = None if proxies_configured() else HTTP1Transport()
    # No cookie jar that keeps what a vendor sets: one client serves every user's turns.
    jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(timeout=httpx.Timeout(read_timeout, connect=connect_timeout), transport=transport,
                             limits=httpx.Limits(max_connections=4000, max_keepalive_connections=200),
                             cookies=jar)


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


class SSEMessage(msgspec.Struct, frozen=True):
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


class LineReader:
    """A body's lines as its bytes arrive: split at CR, LF and CRLF only, decoded as UTF-8.

    The incremental decoder keeps a character cut across two reads until its last byte
    arrives; a CR ending one read may have its LF at the start of the next. Per read:
    one decode, C-level scans and one split (this runs once per token).
    """

    __slots__ = ("_after_cr", "_decode", "_partial")

    def __init__(self) -> None:
        # "replace", as httpx decodes text: a stray invalid byte is not worth failing an answer.
        self._decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        self._partial: list[str] = []
        """The start of a line whose end has not arrived yet."""
        self._after_cr = False
        """The last read ended with CR: an LF opening the next one belongs to it (CRLF)."""

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` completes, without their line ends."""
        text = self._decode(data)
        if self._after_cr and text:
            self._after_cr = False
            if text[0] == "\n":
                text = text[1:]
        if not text:
            return []
        if "\r" in text:
            self._after_cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" not in text:
            self._partial.append(text)
            return []
        lines = text.split("\n")
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = "".join(self._partial)
            self._partial.clear()
        rest = lines.pop()
        if rest:
            self._partial.append(rest)
        return lines

    def flush(self) -> list[str]:
        """End of the body: the last line, if it had no line end."""
        last = "".join(self._partial) + self._decode(b"", True)
        self._partial.clear()
        return [last] if last else []


async def iter_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """The lines of a body (``response.aiter_bytes()``), split as SSE splits them."""
    reader = LineReader()
    async for chunk in chunks:
        for line in reader.feed(chunk):
            yield line
    for line in reader.flush():
        yield line


async def iter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[SSEMessage]:
    """The SSE messages of a body (``response.aiter_bytes()``)."""
    reader, decoder = LineReader(), SSEDecoder()
    async for chunk in chunks:
        for line in reader.feed(chunk):
            message = decoder.feed_line(line)
            if message is not None:
                yield message
    for line in reader.flush():
        message = decoder.feed_line(line)
        if message is not None:
            yield message
    message = decoder.flush()
    if message is not None:
        yield message
