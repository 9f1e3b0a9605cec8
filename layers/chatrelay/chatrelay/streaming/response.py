"""Relay events as an HTTP SSE response: the wire format, and the response that writes it.

Relay events become wire bytes here (encoded by hand, one ASGI message per event, in the
field order comment, id, event, data), in two formats:

- ``json`` (default): ``event: meta``, unnamed ``{"delta"}`` events whose ``id`` is
  the answer's character offset, ``event: reasoning``, ``event: error``,
  ``event: done``, then ``data: [DONE]``.
- ``text``: for clients written as ``answer += e.data`` until ``[DONE]``
  (fetch-event-source's ``onmessage`` gets every event, whatever its name): only the
  answer's text travels in ``data:`` lines, in unnamed events with the offset as ``id``.
  Everything else is an SSE comment, which every client ignores unless it reads
  comments: ``: meta {json}`` first (so a client that never sees response headers
  still learns the message id), ``: reasoning {json}``, and at the end ``: error {json}``
  and ``: done {json}`` before ``data: [DONE]``. A naive client thus ends with exactly
  the answer, or with the partial answer on failure. A delta with line breaks is sent
  as several ``data:`` lines, each ended by the very break that followed it in the
  text (CR, LF or CRLF; all three end a line in SSE), the last by LF: a standard
  parser joins the lines with LF, a byte-level parser (the mini-program kit) that
  keeps each line's terminator rebuilds the text exactly. A delta that is exactly
  ``[DONE]`` is sent as two events (``[DO``, ``NE]``), so no answer ends a stream early.
- ``text`` with the legacy newline marker (``newlines="marker"``): the same, but every LF
  is sent as ``(@n@)`` and every CR as ``(@r@)``, one data line per event. This is the
  convention the legacy H5 client replaces back (``replaceAll("(@n@)", "\n")``), and the
  only way line breaks survive @microsoft/fetch-event-source, whose parser drops an
  event's leading empty data lines (so a delta ``"\n"`` would vanish).

:class:`EventStreamResponse` writes them. It replaced sse-starlette's
``EventSourceResponse``, which wrapped every event in an anyio cancel scope
(``move_on_after``) and ran four tasks per response in an anyio task group (the
generator, pings, the disconnect listener, a shutdown listener); that was a measurable
share of the CPU per relayed token (bench/results/report.md). The guarantees are kept:

- **One writer, pings never inside an event.** Each event is one ASGI body message
  (which the server writes whole), and at most one send is in progress at any time:
  a ping is sent (every ``ping_interval``, ``: ping``) only while the stream is not
  sending, and an event waits for a ping in flight. No lock, no task per event.
- **Disconnect detection.** One listener per response waits for ``http.disconnect``
  and ends the stream at once (the event source is closed, so a turn without
  ``finish_on_disconnect`` stops).
- **Send timeouts.** A send that has not returned after ``send_timeout`` seconds
  (a client that stopped reading while the server's buffers filled up) ends the
  stream and drops the connection, checked on the ping timer rather than per send.
- **Server shutdown** ends the streams (uvicorn waits for open connections before
  it shuts the app down), found as sse-starlette finds it: a watcher per event loop
  polls uvicorn's ``should_exit`` while streams are open.
- ``HEAD`` is answered with the headers only; the stream never starts.

Body messages go straight to the server's ``send`` when the app offers it in the scope
(``RAW_SEND``, set by ``api.middleware.ChatRelayAPI``): the start message still passes
every middleware (status, ``X-Request-ID``, CORS headers), but no middleware sees body
bytes, so none wraps each event. None of the app's middlewares touches a body.

Headers: ``Cache-Control: no-cache, no-transform`` (proxies must neither cache nor
re-encode) and ``X-Accel-Buffering: no``; no ``Connection`` header (hop-by-hop, and
forbidden in HTTP/2, which API Gateway and CloudFront speak to clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from chatrelay.events import DeltaEvent, DoneEvent, ErrorEvent, MetaEvent, ReasoningEvent, RelayEvent
from chatrelay.streaming import RAW_SEND

StreamFormat = Literal["json", "text"]
SEP = "\n"
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
STREAM_OPEN = b": stream open\n\n"
END = b"data: [DONE]\n\n"
PING = b": ping\n\n"
SEND_TIMEOUT = 30.0
"""Seconds a single send may take before the client counts as gone."""
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


# What json.dumps(ensure_ascii=False) does to a str (its C encoder), without building a JSONEncoder
# per call as json.dumps does with non-default options: the delta, once per token.
_json_string = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring


def _meta(event: MetaEvent) -> dict[str, str]:
    return {"conversationId": event.conversation_id, "messageId": event.message_id, "model": event.model}


def _error(event: ErrorEvent) -> dict[str, object]:
    payload: dict[str, object] = {"code": event.code, "message": event.message}
    if event.offset is not None:
        payload["offset"] = event.offset
    return payload


def _done(event: DoneEvent) -> dict[str, object]:
    return {"finishReason": event.finish_reason, "usage": event.usage}


def _named(name: str, payload: object) -> bytes:
    # JSON escapes CR and LF, so one data line always holds the whole payload.
    return f"event: {name}\ndata: {_json(payload)}\n\n".encode()


def _comment(name: str, payload: object) -> bytes:
    return f": {name} {_json(payload)}\n\n".encode()


NewlineStyle = Literal["lines", "marker"]
LF_MARKER, CR_MARKER = "(@n@)", "(@r@)"


def _text_data(text: str, offset: int, newlines: NewlineStyle = "lines") -> bytes:
    if text == "[DONE]":
        return _text_data("[DO", offset - 3, newlines) + _text_data("NE]", offset, newlines)
    if newlines == "marker":
        text = text.replace("\r", CR_MARKER).replace("\n", LF_MARKER)
    if "\r" not in text and "\n" not in text:
        return f"id: {offset}\ndata: {text}\n\n".encode()
    lines = [f"id: {offset}\n"]
    start = 0
    for brk in _LINE_BREAK.finditer(text):
        lines.append(f"data: {text[start:brk.start()]}{brk.group()}")
        start = brk.end()
    lines.append(f"data: {text[start:]}\n\n")
    return "".join(lines).encode()


def to_wire(event: RelayEvent, fmt: StreamFormat, newlines: NewlineStyle = "lines") -> bytes:
    if isinstance(event, DeltaEvent):
        if fmt == "text":
            return _text_data(event.text, event.offset, newlines)
        return f'id: {event.offset}\ndata: {{"delta":{_json_string(event.text)}}}\n\n'.encode()
    encode = _comment if fmt == "text" else _named
    if isinstance(event, MetaEvent):
        return encode("meta", _meta(event))
    if isinstance(event, ReasoningEvent):
        return encode("reasoning", {"delta": event.text})
    if isinstance(event, ErrorEvent):
        return encode("error", _error(event))
    if isinstance(event, DoneEvent):
        return encode("done", _done(event))
    raise TypeError(f"not a relay event: {event!r}")




_TO_WIRE: dict[tuple[str, str], Callable[[RelayEvent], bytes]] = {
    (fmt, newlines): functools.partial(to_wire, fmt=fmt, newlines=newlines)
    for fmt in ("json", "text") for newlines in ("lines", "marker")
}


class _Stream:
    """The state of one response being written; its callbacks run on the event loop."""

    __slots__ = ("task", "loop", "send", "ping_interval", "send_timeout", "sending_since", "ping", "ended_by",
                 "closed", "timer")

    def __init__(self, send: Send, ping_interval: float, send_timeout: float | None) -> None:
        self.task = asyncio.current_task()
        self.loop = asyncio.get_running_loop()
        self.send = send
        self.ping_interval = ping_interval
        self.send_timeout = send_timeout
        self.sending_since = 0.0
        """``loop.time()`` the send in progress began at, 0 when none is."""
        self.ping: asyncio.Task | None = None
        self.ended_by: str | None = None
        """Why the stream was ended from outside: disconnect, shutdown or send_timeout."""
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        interval = min(x for x in (ping_interval, send_timeout or 0) if x > 0) if ping_interval or send_timeout else 0
        if interval:
            self.timer = self.loop.call_later(interval, self._tick, interval)

    def end(self, reason: str) -> None:
        """End the stream from outside (the writer task is cancelled and finishes cleanly)."""
        if self.ended_by is None and not self.closed:
            self.ended_by = reason
            assert self.task is not None
            self.task.cancel()

    def _tick(self, interval: float) -> None:
        if self.closed:
            return
        now = self.loop.time()
        if self.sending_since:
            if self.send_timeout and now - self.sending_since > self.send_timeout:
                self.end("send_timeout")
                return
        elif self.ping_interval and self.ping is None:
            self.ping = self.loop.create_task(self._ping())
        self.timer = self.loop.call_later(interval, self._tick, interval)

    async def _ping(self) -> None:
        try:
            self.sending_since = self.loop.time()
            await self.send({"type": "http.response.body", "body": PING, "more_body": True})
        finally:
            self.sending_since = 0.0
            self.ping = None

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()


async def _listen_for_disconnect(receive: Receive, stream: _Stream) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            stream.end("disconnect")
            return


class EventStreamResponse(Response):
    """Already-encoded SSE chunks as a streamed response (see the module docstring for its guarantees)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        chunks: AsyncIterator[Any],
        *,
        headers: Mapping[str, str] | None = None,
        ping_interval: float = 15.0,
        send_timeout: float | None = SEND_TIMEOUT,
        encode: Callable[[Any], bytes] | None = None,
        first: bytes = b"",
        last: bytes = b"",
    ) -> None:
        """``chunks``: encoded SSE (bytes), or items that ``encode`` turns into it (one generator less
        per event); ``first`` is sent before them, ``last`` after them when they ran to their end."""
        self.body_iterator = chunks
        self.encode = encode
        self.first, self.last = first, last
        self.status_code = 200
        self.background = None
        self.ping_interval = ping_interval
        self.send_timeout = send_timeout
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        body_send: Send = scope.get(RAW_SEND) or send
        stream = _Stream(body_send, self.ping_interval, self.send_timeout)
        task = stream.task
        assert task is not None
        listener = stream.loop.create_task(_listen_for_disconnect(receive, stream))
        _shutdown.watch(stream)
        chunks, encode, now = self.body_iterator, self.encode, stream.loop.time
        finished = False
        try:
            try:
                if self.first:
                    await body_send({"type": "http.response.body", "body": self.first, "more_body": True})
                async for chunk in chunks:
                    if encode is not None and not (chunk := encode(chunk)):
                        continue
                    if stream.ping is not None:  # one writer: let a ping in flight go out first
                        await stream.ping
                    stream.sending_since = now()
                    await body_send({"type": "http.response.body", "body": chunk, "more_body": True})
                    stream.sending_since = 0.0
                finished = True
                if self.last:
                    await body_send({"type": "http.response.body", "body": self.last, "more_body": True})
            except asyncio.CancelledError:
                if stream.ended_by is None or task.uncancel() > 0:
                    raise  # cancelled by someone else: let it through
            stream.close()
            if stream.ping is not None:
                with contextlib.suppress(Exception):
                    await stream.ping
            if stream.ended_by in (None, "shutdown"):
                await body_send({"type": "http.response.body", "body": b"", "more_body": False})
            # After a disconnect there is nobody to tell; after a send timeout the connection is
            # stuck: returning without the last message makes the server drop it.
        finally:
            stream.close()
            listener.cancel()
            _shutdown.forget(stream)
            if not finished:
                # Ended early (disconnect, shutdown, timeout, an error): close the source now, so a
                # relay that is not to outlive its client stops (its events' finally runs).
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()


class _ShutdownWatch:
    """Ends the open streams when uvicorn begins to shut down (it waits for open connections first).

    uvicorn is found as sse-starlette finds it: its ``Server.handle_exit`` is the SIGTERM handler.
    One watcher task per event loop, alive only while that loop has open streams.
    """

    POLL = 0.5

    def __init__(self) -> None:
        self._streams: dict[asyncio.AbstractEventLoop, set[_Stream]] = {}

    def watch(self, stream: _Stream) -> None:
        streams = self._streams.get(stream.loop)
        if streams is None:
            streams = self._streams[stream.loop] = set()
            stream.loop.create_task(self._run(stream.loop, streams))
        streams.add(stream)

    def forget(self, stream: _Stream) -> None:
        self._streams.get(stream.loop, set()).discard(stream)

    async def _run(self, loop: asyncio.AbstractEventLoop, streams: set[_Stream]) -> None:
        try:
            while streams:
                if _uvicorn_should_exit():
                    for stream in list(streams):
                        stream.end("shutdown")
                    return
                await asyncio.sleep(self.POLL)
        finally:
            if self._streams.get(loop) is streams:
                del self._streams[loop]


def _uvicorn_should_exit() -> bool:
    handler: Any = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return bool(getattr(server, "should_exit", False))


_shutdown = _ShutdownWatch()


def event_stream_response(
    chunks: AsyncIterator[bytes], *, ping_interval: float = 15.0, headers: Mapping[str, str] | None = None
) -> EventStreamResponse:
    """Already-encoded SSE chunks as a response: pings, disconnect detection, send timeouts, unbuffered headers."""
    return EventStreamResponse(chunks, headers=headers, ping_interval=ping_interval)


def sse_response(
    events: AsyncIterator[RelayEvent],
    *,
    fmt: StreamFormat = "json",
    newlines: NewlineStyle = "lines",
    ping_interval: float = 15.0,
    headers: Mapping[str, str] | None = None,
) -> EventStreamResponse:
    # STREAM_OPEN first, an immediate comment: the client (and every proxy on the way) sees bytes at once.
    return EventStreamResponse(events, headers=headers, ping_interval=ping_interval, first=STREAM_OPEN, last=END,
                               encode=_TO_WIRE[fmt, newlines])
