"""A local fake of the Anthropic Messages API (``POST /v1/messages``), faithful on the wire.

Streams as Anthropic does: ``message_start`` (usage.input_tokens), a ``ping``, per
content block ``content_block_start`` / ``content_block_delta`` (``thinking_delta``
then ``signature_delta`` for a thinking block, ``text_delta`` for text) /
``content_block_stop``, then ``message_delta`` (stop_reason, usage.output_tokens)
and ``message_stop``. Errors are ``{"type":"error","error":{"type","message"},
"request_id"}`` with Anthropic's status codes (529 for ``overloaded_error``), and
mid-stream an ``event: error``. Requests without ``anthropic-version`` or with a
wrong key (``x-api-key``, or ``Authorization: Bearer`` as recent SDKs send it) are
refused as Anthropic refuses them; a system role inside
``messages`` is a 400, as it is there. ``tests/functional/test_providers_anthropic.py``
proves it with the official ``anthropic`` SDK.

Knobs (every fake's, see ``common.py``): ``reasoning`` as thinking deltas first,
``keepalive`` as ``ping`` events while waiting for the first token, ``fault`` = ``http_429`` |
``http_529`` | ``http_500`` | ``http_401`` | ``cut`` | ``stall`` | ``malformed`` |
``error_event`` (an ``overloaded_error`` event after ``fault_after`` chunks; 0 = before
any text).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chatrelay_dev.mockllm.common import (
    REASONING_TOKENS,
    Fake,
    MockConfig,
    content_text,
    http_fault,
    outcome,
    prompt_tokens,
    reasoning,
)

FAULTS = {"none", "http_429", "http_529", "http_500", "http_401", "cut", "stall", "malformed", "error_event"}
_HTTP_FAULTS = {
    "http_429": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    "http_529": (529, "overloaded_error", "Overloaded"),
    "http_500": (500, "api_error", "Internal server error"),
    "http_401": (401, "authentication_error", "invalid x-api-key"),
}
_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def _error(status: int, type_: str, message: str, request_id: str, headers: dict | None = None) -> JSONResponse:
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": request_id}
    return JSONResponse(body, status_code=status, headers={"request-id": request_id, **(headers or {})})


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


_STREAM_FAULTS = {
    "malformed": b'event: content_block_delta\ndata: {"type": "content_block_delta", "index"\n\n',
    "error_event": _sse("error", _OVERLOADED),
}


class AnthropicFake(Fake):
    def routes(self) -> list[Route]:
        return [Route("/v1/messages", self.messages, methods=["POST"])]

    async def messages(self, request: Request) -> Response:
        request_id = f"req_mock{next(self._ids):06d}"
        if self.config.api_key and self.config.api_key not in _presented_keys(request):
            return _error(401, "authentication_error", "invalid x-api-key", request_id)
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required", request_id)
        try:
            body = await request.json()
            model, messages, max_tokens = body["model"], body["messages"], body["max_tokens"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "invalid_request_error", "model, messages and max_tokens are required", request_id)
        problem = _check_messages(messages, max_tokens)
        if problem:
            return _error(400, "invalid_request_error", problem, request_id)
        config = self.knobs(messages)
        message_id = f"msg_mock{request_id[-6:]}"
        record = self.log(config, id=message_id, body=body, headers={
            k: v for k, v in request.headers.items() if k not in ("x-api-key", "authorization")})
        fault = http_fault(config, record, _HTTP_FAULTS)
        if fault:
            status, type_, text = fault
            return _error(status, type_, text, request_id, {"retry-after": "1"} if status == 429 else None)

        system = body.get("system")
        system_text = system if isinstance(system, str) else content_text(system)
        usage_in = prompt_tokens(system_text, *(content_text(m.get("content")) for m in messages))
        if not body.get("stream"):
            await asyncio.sleep(config.ttft)
            record["outcome"] = "complete"
            content = []
            if config.reasoning:
                content.append({"type": "thinking", "thinking": "".join(REASONING_TOKENS[: config.reasoning]),
                                "signature": "mock-signature"})
            content.append({"type": "text", "text": "".join(config.pieces())})
            return JSONResponse({
                "id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": config.tokens},
            }, headers={"request-id": request_id})
        return StreamingResponse(
            self._stream(config, message_id, model, usage_in, record),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "request-id": request_id},
        )

    async def _stream(self, config: MockConfig, message_id: str, model: str, usage_in: int,
                      record: dict) -> AsyncIterator[bytes]:
        with outcome(record):
            yield _sse("message_start", {"type": "message_start", "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": usage_in, "output_tokens": 1}}})
            if config.keepalive:
                for _ in range(3):
                    yield _sse("ping", {"type": "ping"})
                    await asyncio.sleep(config.ttft / 3)
            else:
                await asyncio.sleep(config.ttft)
            if config.fault == "error_event" and config.fault_after == 0:
                record["outcome"] = config.fault
                yield _sse("error", _OVERLOADED)
                return
            index = 0
            if config.reasoning:
                thinking_block = {"type": "thinking", "thinking": "", "signature": ""}
                yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                   "content_block": thinking_block})
                async for piece in reasoning(config):
                    yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                       "delta": {"type": "thinking_delta", "thinking": piece}})
                yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "signature_delta", "signature": "mock-signature"}})
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
                index = 1
            yield _sse("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": {"type": "text", "text": ""}})
            yield _sse("ping", {"type": "ping"})

            def text_delta(_: int, piece: str) -> bytes:
                return _sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                    "delta": {"type": "text_delta", "text": piece}})

            tail = [_sse("content_block_stop", {"type": "content_block_stop", "index": index}),
                    _sse("message_delta", {"type": "message_delta",
                                           "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                           "usage": {"output_tokens": config.tokens}}),
                    _sse("message_stop", {"type": "message_stop"})]
            async for data in self.content(config, record, text_delta, _STREAM_FAULTS, tail):
                yield data


def _presented_keys(request: Request) -> set[str]:
    """The key as ``x-api-key`` or as ``Authorization: Bearer`` (what recent SDKs send)."""
    keys = {request.headers.get("x-api-key", "")}
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        keys.add(credential)
    return keys - {""}


def _check_messages(messages: Any, max_tokens: Any) -> str | None:
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: must be a positive integer"
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return (f'messages.{i}.role: Input should be "user" or "assistant"' if role != "system" else
                    'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                    "not \"system\" as an input message role.")
    return None


def create_anthropic_fake(config: MockConfig | None = None) -> Starlette:
    return AnthropicFake(config).app()
