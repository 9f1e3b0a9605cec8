"""A local fake of the OpenAI chat completions API, faithful on the wire.

It streams ``chat.completion.chunk`` objects as SSE exactly as OpenAI does: a first
chunk with ``role``, content chunks, a chunk with ``finish_reason`` and an empty
delta, then (with ``stream_options.include_usage``) a usage chunk whose
``choices`` is empty, then ``data: [DONE]``; errors are ``{"error": {...}}`` bodies
with OpenAI's status codes. ``tests/functional/test_mockllm_openai_sdk.py`` proves
it by consuming it with the official ``openai`` SDK.

Knobs: those of every fake (``common.py``), with ``keepalive`` as ``: keep-alive``
comments while "queued" (DeepSeek), ``reasoning`` as ``reasoning_content`` chunks and
``fault`` = none | http_429 | http_500 | http_401 | cut | malformed | stall | error_event.
``GET /_mock/requests`` lists what was asked and how each stream ended
(``complete``, ``cancelled`` when the caller hung up, or the fault).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chatrelay_dev.mockllm.common import Fake, MockConfig, http_fault, outcome, prompt_tokens, reasoning

FAULTS = {"none", "http_429", "http_500", "http_401", "cut", "malformed", "stall", "error_event"}
_HTTP_FAULTS = {
    "http_429": (429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded", {"retry-after": "1"}),
    "http_500": (500, "The server had an error while processing your request.", "server_error", None, None),
    "http_401": (401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key", None),
}
_STREAM_FAULTS = {
    "malformed": b'data: {"id": "broken", "choices": [\n\n',
    "error_event": b'data: {"error":{"message":"overloaded","type":"server_error","code":null}}\n\n',
}


def _error(status: int, message: str, type_: str, code: str | None, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _data(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class MockLLM(Fake):
    """The OpenAI-compatible fake."""

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/chat/completions", self.chat_completions, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]

    async def models(self, request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": "mock-gpt", "object": "model", "created": 0, "owned_by": "chatrelay"}]}
        )

    async def chat_completions(self, request: Request) -> Response:
        if self.config.api_key and request.headers.get("authorization") != f"Bearer {self.config.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        try:
            body = await request.json()
            messages = body["messages"]
            model = body["model"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "Invalid request body.", "invalid_request_error", None)
        config = self.knobs(messages)
        completion_id = f"chatcmpl-mock{next(self._ids)}"
        client = f"{request.client.host}:{request.client.port}" if request.client else None
        # The caller's address tells a reused connection.
        record = self.log(config, id=completion_id, body=body, client=client)
        fault = http_fault(config, record, _HTTP_FAULTS)
        if fault:
            return _error(*fault)

        prompt = prompt_tokens(*(str(m.get("content", "")) for m in messages))
        usage = {"prompt_tokens": prompt, "completion_tokens": config.tokens, "total_tokens": prompt + config.tokens}
        if not body.get("stream"):
            await asyncio.sleep(config.ttft)
            record["outcome"] = "complete"
            return JSONResponse(
                {
                    "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(config.pieces())},
                                 "logprobs": None, "finish_reason": "stop"}],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._stream(config, completion_id, model, usage, include_usage, record),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def _stream(
        self, config: MockConfig, cid: str, model: str, usage: dict, include_usage: bool, record: dict
    ) -> AsyncIterator[bytes]:
        created = int(time.time())

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            obj: dict[str, Any] = {
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                obj["usage"] = None
            return _data(obj)

        tail = [chunk({}, "stop")]
        if include_usage:
            tail.append(_data({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                               "system_fingerprint": "fp_mock", "choices": [], "usage": usage}))
        tail.append(b"data: [DONE]\n\n")
        with outcome(record):
            if config.keepalive:
                for _ in range(3):
                    yield b": keep-alive\n\n"
                    await asyncio.sleep(config.ttft / 3)
            else:
                await asyncio.sleep(config.ttft)
            yield chunk({"role": "assistant", "content": ""})
            async for piece in reasoning(config):
                yield chunk({"reasoning_content": piece})
            async for data in self.content(config, record, lambda _, piece: chunk({"content": piece}),
                                           _STREAM_FAULTS, tail):
                yield data


def create_mock_app(config: MockConfig | None = None) -> Starlette:
    return MockLLM(config).app()
