"""Relay events as the AI SDK's UI message stream (protocol ``v1``), for ``useChat`` pages.

SSE whose data are JSON chunks (the AI SDK's ``uiMessageChunkSchema``): ``start`` (with our
message id as the assistant message's id), ``reasoning-start``/``-delta``/``-end``,
``text-start``/``-delta``/``-end``, ``error`` (``errorText``), ``finish`` (``finishReason``),
then ``data: [DONE]``. The response carries ``x-vercel-ai-ui-message-stream: v1``.

Deliberate addition: when the content check cuts an answer that was already partly shown
(``answer_blocked``), a ``data-chatrelay-cut`` part with ``{"offset": n}`` tells the page
where the safe text ends (the stored answer is cut there); the AI SDK keeps it as a data part.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import msgspec

from chatrelay import errors
from chatrelay.events import DeltaEvent, DoneEvent, ErrorEvent, MetaEvent, ReasoningEvent, RelayEvent

HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
FINISH_REASONS = {
    "stop": "stop",
    "stopped": "stop",
    "client_disconnected": "stop",
    "length": "length",
    "length_cap": "length",
    "time_cap": "length",
    "lambda_timeout": "length",
    "blocked": "content-filter",
    "error": "error",
}


def _chunk(payload: dict[str, object]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


class UIMessageEncoder(msgspec.Struct):
    message_id: str = ""
    _text_open: bool = False
    _reasoning_open: bool = False

    def _close_reasoning(self) -> bytes:
        if not self._reasoning_open:
            return b""
        self._reasoning_open = False
        return _chunk({"type": "reasoning-end", "id": f"r-{self.message_id}"})

    def _close_text(self) -> bytes:
        if not self._text_open:
            return b""
        self._text_open = False
        return _chunk({"type": "text-end", "id": f"t-{self.message_id}"})

    def encode(self, event: RelayEvent) -> bytes:
        if isinstance(event, DeltaEvent):
            out = self._close_reasoning()
            if not self._text_open:
                self._text_open = True
                out += _chunk({"type": "text-start", "id": f"t-{self.message_id}"})
            return out + _chunk({"type": "text-delta", "id": f"t-{self.message_id}", "delta": event.text})
        if isinstance(event, ReasoningEvent):
            out = b""
            if not self._reasoning_open:
                self._reasoning_open = True
                out = _chunk({"type": "reasoning-start", "id": f"r-{self.message_id}"})
            return out + _chunk({"type": "reasoning-delta", "id": f"r-{self.message_id}", "delta": event.text})
        if isinstance(event, MetaEvent):
            self.message_id = event.message_id
            return _chunk({"type": "start", "messageId": event.message_id})
        if isinstance(event, ErrorEvent):
            out = self._close_reasoning() + self._close_text()
            if event.code == errors.ANSWER_BLOCKED and event.offset is not None:
                out += _chunk({"type": "data-chatrelay-cut", "data": {"offset": event.offset}})
            return out + _chunk({"type": "error", "errorText": event.message})
        if isinstance(event, DoneEvent):
            reason = FINISH_REASONS.get(event.finish_reason, "other")
            return self._close_reasoning() + self._close_text() + _chunk({"type": "finish", "finishReason": reason})
        raise TypeError(f"not a relay event: {event!r}")


async def ui_message_chunks(events: AsyncIterator[RelayEvent]) -> AsyncIterator[bytes]:
    encoder = UIMessageEncoder()
    async for event in events:
        yield encoder.encode(event)
    yield b"data: [DONE]\n\n"
