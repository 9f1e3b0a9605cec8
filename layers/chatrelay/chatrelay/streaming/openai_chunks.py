"""Relay events as OpenAI chat completions: ``chat.completion.chunk`` SSE, or one ``chat.completion``.

The shapes follow OpenAI's API reference as its SDKs parse them: every chunk carries
``id``/``object``/``created``/``model``/``choices``; the first delta has the role, content
deltas follow, reasoning travels as ``reasoning_content`` deltas as DeepSeek sends it, the
last choice chunk has ``finish_reason``, and with ``stream_options.include_usage`` a final
chunk with empty ``choices`` carries ``usage``; then ``data: [DONE]``. A failure after the
stream has begun is one ``{"error": {...}}`` chunk before ``[DONE]`` (the SDKs raise
``APIError`` on it). The stored turn keeps its own finish reason; the map below is only
what OpenAI clients understand.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import msgspec

from chatrelay import errors
from chatrelay.events import DeltaEvent, DoneEvent, ErrorEvent, MetaEvent, ReasoningEvent, RelayEvent

# Our finish reasons (stored with the turn) as OpenAI's.
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "length_cap": "length",
    "time_cap": "length",
    "lambda_timeout": "length",
    "blocked": "content_filter",
    "content_filter": "content_filter",
    "stopped": "stop",
    "client_disconnected": "stop",
}
# Stream errors that OpenAI clients see as a content filter rather than a failure.
FILTERED = {errors.QUESTION_BLOCKED, errors.ANSWER_BLOCKED}


def error_type(status: int) -> str:
    """OpenAI's ``error.type`` for an HTTP status (its SDKs pick the exception class by status)."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": error_type(status), "code": code, "param": param}}


def _usage(usage: dict[str, int] | None) -> dict[str, int] | None:
    if not usage:
        return None
    return {"prompt_tokens": usage.get("promptTokens", 0), "completion_tokens": usage.get("completionTokens", 0),
            "total_tokens": usage.get("totalTokens", 0)}


def _dumps(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class ChunkEncoder(msgspec.Struct):
    """One turn's events as ``chat.completion.chunk`` SSE bytes."""

    include_usage: bool = False
    created: int = msgspec.field(default_factory=lambda: int(time.time()))
    _head: str = ""
    pending_error: bytes = b""
    """An error chunk held until the turn's ending is stored (its ``done`` event), so a client
    that reads the turn as soon as its SDK raises finds it ended."""

    def _chunk(self, choices: str, extra: str = "") -> bytes:
        return f'data: {{{self._head},"choices":{choices}{extra}}}\n\n'.encode()

    def encode(self, event: RelayEvent) -> bytes:
        if isinstance(event, DeltaEvent):
            return self._chunk(f'[{{"index":0,"delta":{{"content":{_dumps(event.text)}}},"finish_reason":null}}]')
        if isinstance(event, ReasoningEvent):
            return self._chunk(
                f'[{{"index":0,"delta":{{"reasoning_content":{_dumps(event.text)}}},"finish_reason":null}}]')
        if isinstance(event, MetaEvent):
            self._head = (f'"id":"chatcmpl-{event.message_id}","object":"chat.completion.chunk",'
                          f'"created":{self.created},"model":{_dumps(event.model)}')
            return self._chunk('[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]')
        if isinstance(event, ErrorEvent):
            if event.code in FILTERED:
                return b""  # the done event says content_filter
            self.pending_error = f"data: {_dumps(error_body(502, event.code, event.message))}\n\n".encode()
            return b""
        if isinstance(event, DoneEvent):
            if self.pending_error:
                out, self.pending_error = self.pending_error, b""
                return out  # the error chunk is the ending
            reason = FINISH_REASONS.get(event.finish_reason, "stop")
            out = self._chunk(f'[{{"index":0,"delta":{{}},"finish_reason":"{reason}"}}]')
            usage = _usage(event.usage)
            if self.include_usage:
                out += self._chunk("[]", f',"usage":{_dumps(usage)}')
            return out
        raise TypeError(f"not a relay event: {event!r}")


async def completion_chunks(events: AsyncIterator[RelayEvent], *, include_usage: bool) -> AsyncIterator[bytes]:
    encoder = ChunkEncoder(include_usage=include_usage)
    async for event in events:
        wire = encoder.encode(event)
        if wire:
            yield wire
    if encoder.pending_error:  # an error with no ending after it (the answer could not be stored)
        yield encoder.pending_error
    yield b"data: [DONE]\n\n"


class Completion(msgspec.Struct):
    """A whole turn gathered for a non-streamed ``chat.completion``."""

    message_id: str = ""
    model: str = ""
    text: list[str] = msgspec.field(default_factory=list)
    reasoning: list[str] = msgspec.field(default_factory=list)
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None
    error: ErrorEvent | None = None

    @classmethod
    async def gather(cls, events: AsyncIterator[RelayEvent]) -> Completion:
        completion = cls()
        async for event in events:
            if isinstance(event, MetaEvent):
                completion.message_id, completion.model = event.message_id, event.model
            elif isinstance(event, DeltaEvent):
                completion.text.append(event.text)
            elif isinstance(event, ReasoningEvent):
                completion.reasoning.append(event.text)
            elif isinstance(event, ErrorEvent):
                if event.code == errors.ANSWER_BLOCKED and event.offset is not None:
                    completion.text = ["".join(completion.text)[: event.offset]]
                if event.code not in FILTERED:
                    completion.error = event
            elif isinstance(event, DoneEvent):
                completion.finish_reason, completion.usage = event.finish_reason, event.usage
        return completion

    def to_openai(self) -> dict[str, object]:
        message: dict[str, object] = {"role": "assistant", "content": "".join(self.text)}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        return {
            "id": f"chatcmpl-{self.message_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": FINISH_REASONS.get(self.finish_reason, "stop")}],
            "usage": _usage(self.usage),
        }
