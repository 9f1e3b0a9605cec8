"""Relay events as an HTTP SSE response, built on sse-starlette.

sse-starlette owns the response mechanics: the generator, the ping task and the
disconnect listener run as siblings in one task group, and every write goes
through one lock, so a ping never lands inside an event. This module only maps
relay events to wire events, in two formats:

- ``json`` (default): ``event: meta``, unnamed ``{"delta"}`` events whose ``id`` is
  the answer's character offset, ``event: reasoning``, ``event: error``,
  ``event: done``, then ``data: [DONE]``.
- ``text``: for clients written as ``answer += e.data``: the unnamed events carry
  the raw text (a multi-line delta becomes several ``data:`` lines, which the
  client's parser joins back with LF), metadata goes in the response headers.

Deliberate deviations from sse-starlette's defaults: ``Cache-Control`` is
``no-cache, no-transform`` (proxies must neither cache nor re-encode), and the
``Connection: keep-alive`` header it adds is removed: it is hop-by-hop, and
forbidden in HTTP/2, which API Gateway and CloudFront speak to clients.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Literal

from sse_starlette import EventSourceResponse, ServerSentEvent

from chatrelay.events import DeltaEvent, DoneEvent, ErrorEvent, MetaEvent, ReasoningEvent, RelayEvent

StreamFormat = Literal["json", "text"]
SEP = "\n"
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


def _json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def to_wire(event: RelayEvent, fmt: StreamFormat) -> ServerSentEvent | None:
    if isinstance(event, DeltaEvent):
        data = event.text if fmt == "text" else _json({"delta": event.text})
        return ServerSentEvent(data, id=str(event.offset), sep=SEP)
    if isinstance(event, MetaEvent):
        if fmt == "text":
            return None
        payload = {"conversationId": event.conversation_id, "messageId": event.message_id, "model": event.model}
        return ServerSentEvent(_json(payload), event="meta", sep=SEP)
    if isinstance(event, ReasoningEvent):
        return ServerSentEvent(_json({"delta": event.text}), event="reasoning", sep=SEP)
    if isinstance(event, ErrorEvent):
        payload = {"code": event.code, "message": event.message}
        if event.offset is not None:
            payload["offset"] = event.offset
        return ServerSentEvent(_json(payload), event="error", sep=SEP)
    if isinstance(event, DoneEvent):
        return ServerSentEvent(_json({"finishReason": event.finish_reason, "usage": event.usage}), event="done", sep=SEP)
    raise TypeError(f"not a relay event: {event!r}")


async def _wire_events(events: AsyncIterator[RelayEvent], fmt: StreamFormat) -> AsyncIterator[ServerSentEvent]:
    # An immediate comment: the client (and every proxy on the way) sees bytes at once.
    yield ServerSentEvent(comment="stream open", sep=SEP)
    async for event in events:
        wire = to_wire(event, fmt)
        if wire is not None:
            yield wire
    yield ServerSentEvent("[DONE]", sep=SEP)


def sse_response(
    events: AsyncIterator[RelayEvent],
    *,
    fmt: StreamFormat = "json",
    ping_interval: float = 15.0,
    headers: Mapping[str, str] | None = None,
) -> EventSourceResponse:
    response = EventSourceResponse(
        _wire_events(events, fmt),
        headers={**SSE_HEADERS, **(headers or {})},
        ping=ping_interval,
        sep=SEP,
        ping_message_factory=lambda: ServerSentEvent(comment="ping", sep=SEP),
    )
    del response.headers["connection"]
    return response
