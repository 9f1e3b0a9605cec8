"""Relay events as an HTTP SSE response, built on sse-starlette.

sse-starlette owns the response mechanics: the generator, the ping task and the
disconnect listener run as siblings in one task group, and every write goes
through one lock, so a ping never lands inside an event. This module maps relay
events to wire bytes (encoded here, in the field order sse-starlette uses: comment,
id, event, data), in two formats:

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

Deliberate deviations from sse-starlette's defaults: ``Cache-Control`` is
``no-cache, no-transform`` (proxies must neither cache nor re-encode), and the
``Connection: keep-alive`` header it adds is removed: it is hop-by-hop, and
forbidden in HTTP/2, which API Gateway and CloudFront speak to clients.

sse-starlette is imported by the first stream, not at start-up: it imports uvicorn, which the
buffered API function (Mangum) has no other use for (~10 ms of its cold start).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Literal

from chatrelay.events import DeltaEvent, DoneEvent, ErrorEvent, MetaEvent, ReasoningEvent, RelayEvent

StreamFormat = Literal["json", "text"]
SEP = "\n"
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
STREAM_OPEN = b": stream open\n\n"
END = b"data: [DONE]\n\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

if TYPE_CHECKING:
    from sse_starlette import EventSourceResponse


def _json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


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
        return f"id: {event.offset}\ndata: {_json({'delta': event.text})}\n\n".encode()
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


async def _wire_events(
    events: AsyncIterator[RelayEvent], fmt: StreamFormat, newlines: NewlineStyle
) -> AsyncIterator[bytes]:
    # An immediate comment: the client (and every proxy on the way) sees bytes at once.
    yield STREAM_OPEN
    async for event in events:
        yield to_wire(event, fmt, newlines)
    yield END


def event_stream_response(
    chunks: AsyncIterator[bytes], *, ping_interval: float = 15.0, headers: Mapping[str, str] | None = None
) -> EventSourceResponse:
    """Already-encoded SSE chunks as a response: pings, disconnect detection, unbuffered headers."""
    from sse_starlette import EventSourceResponse, ServerSentEvent

    response = EventSourceResponse(
        chunks,
        headers={**SSE_HEADERS, **(headers or {})},
        ping=ping_interval,
        sep=SEP,
        ping_message_factory=lambda: ServerSentEvent(comment="ping", sep=SEP),
    )
    del response.headers["connection"]
    return response


def sse_response(
    events: AsyncIterator[RelayEvent],
    *,
    fmt: StreamFormat = "json",
    newlines: NewlineStyle = "lines",
    ping_interval: float = 15.0,
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    return event_stream_response(_wire_events(events, fmt, newlines), ping_interval=ping_interval, headers=headers)
