"""A local fake of the OpenAI chat completions API, faithful on the wire.

It streams ``chat.completion.chunk`` objects as SSE exactly as OpenAI does: a first
chunk with ``role``, content chunks, a chunk with ``finish_reason`` and an empty
delta, then (with ``stream_options.include_usage``) a usage chunk whose
``choices`` is empty, then ``data: [DONE]``; errors are ``{"error": {...}}`` bodies
with OpenAI's status codes. ``tests/functional/test_mockllm_openai_sdk.py`` proves
it by consuming it with the official ``openai`` SDK.

Knobs (server defaults from the command line, per request from a directive such
as ``[mock ttft=0.5 tokens=40 fault=cut fault_after=5]`` in the last user message):

    ttft         seconds before the first token          interval  seconds between tokens
    tokens       answer length in chunks                 keepalive ``: keep-alive`` comments while "queued"
    fault        none | http_429 | http_500 | http_401 | cut | malformed | stall | error_event
    fault_after  chunks sent before a mid-stream fault   reasoning reasoning_content chunks first (DeepSeek)
    hold_after   chunks sent before waiting on gate ``gate`` (released by POST /_mock/gates/{gate})
    stamp        1: append ``@<time.monotonic_ns()>@`` (the send time) to each content chunk (bench/)
    say, say_at  send the chunk ``say`` + " " in place of chunk number ``say_at`` (content-safety tests;
                 ``say`` is percent-decoded, so the question need not contain the word itself)

The gate makes streaming tests deterministic: the fake sends a token, then waits
until the test's client has seen it; a relay that buffers never releases the gate.
``GET /_mock/requests`` lists what was asked and how each stream ended
(``complete``, ``cancelled`` when the caller hung up, or the fault).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, fields, replace
from itertools import count
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CORPUS = (
    "Sure! Here is a streamed answer.\n\n"
    "你好，这是一个流式回答。🚀\n\n"
    "- First point: SSE keeps newlines intact.\n"
    "- 第二点：中文与 emoji 😀 混排也不会乱码。\n\n"
    "```python\nprint('hello, chatrelay')\n```\n\n"
    "That is all for now. "
)
REASONING = "Let me think step by step. 先分析问题，再给出答案。"
_TOKEN = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]|[^\s\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+[ \t]*|\s")
TOKENS = _TOKEN.findall(CORPUS)
REASONING_TOKENS = _TOKEN.findall(REASONING)
_DIRECTIVE = re.compile(r"\[mock((?:\s+\w+=[^\s\]]+)*)\s*\]")
FAULTS = {"none", "http_429", "http_500", "http_401", "cut", "malformed", "stall", "error_event"}


def answer_tokens(n: int, say: str = "", say_at: int = 0) -> list[str]:
    """The first ``n`` content chunks the fake sends (tests compare against these)."""
    return [f"{say} " if say and i == say_at else TOKENS[i % len(TOKENS)] for i in range(n)]


def answer_text(n: int, say: str = "", say_at: int = 0) -> str:
    return "".join(answer_tokens(n, say, say_at))


@dataclass(frozen=True)
class MockConfig:
    ttft: float = 0.05
    interval: float = 0.03
    tokens: int = 40
    fault: str = "none"
    fault_after: int = 3
    keepalive: bool = False
    reasoning: int = 0
    hold_after: int = 0
    gate: str = ""
    api_key: str = ""
    """When set, requests must carry ``Authorization: Bearer <api_key>``."""
    say: str = ""
    say_at: int = 0
    stamp: bool = False
    """Append the send time (``@<time.monotonic_ns()>@``, CLOCK_MONOTONIC: system-wide) to each
    content chunk, so a client on the same machine can tell each chunk's delivery delay."""

    def with_directive(self, text: str) -> MockConfig:
        match = _DIRECTIVE.search(text)
        if not match:
            return self
        types = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for pair in match.group(1).split():
            key, _, value = pair.partition("=")
            if key not in types or key == "api_key":
                continue
            kind = types[key]
            if kind in ("float", float):
                changes[key] = float(value)
            elif kind in ("int", int):
                changes[key] = int(value)
            elif kind in ("bool", bool):
                changes[key] = value.lower() in ("1", "true", "yes")
            else:
                changes[key] = unquote(value) if key == "say" else value
        return replace(self, **changes)


class _Cut(Exception):
    """Raised inside a streaming body: the server drops the connection mid-response."""


def _error(status: int, message: str, type_: str, code: str | None, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class MockLLM:
    def __init__(self, config: MockConfig | None = None, history: int = 500) -> None:
        self.config = config or MockConfig()
        self.requests: deque[dict[str, Any]] = deque(maxlen=history)
        self._gates: dict[str, asyncio.Event] = {}
        self._ids = count(1)

    def gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/_mock/gates/{name}", self.release_gate, methods=["POST"]),
                Route("/_mock/requests", self.list_requests, methods=["GET"]),
                Route("/healthz", lambda r: JSONResponse({"status": "ok"}), methods=["GET"]),
            ]
        )

    async def models(self, request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": "mock-gpt", "object": "model", "created": 0, "owned_by": "chatrelay"}]}
        )

    async def release_gate(self, request: Request) -> Response:
        self.gate(request.path_params["name"]).set()
        return JSONResponse({"released": request.path_params["name"]})

    async def list_requests(self, request: Request) -> Response:
        return JSONResponse(list(self.requests))

    async def chat_completions(self, request: Request) -> Response:
        if self.config.api_key and request.headers.get("authorization") != f"Bearer {self.config.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        try:
            body = await request.json()
            messages = body["messages"]
            model = body["model"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "Invalid request body.", "invalid_request_error", None)
        last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        config = self.config.with_directive(str(last_user))
        completion_id = f"chatcmpl-mock{next(self._ids)}"
        client = f"{request.client.host}:{request.client.port}" if request.client else None
        record: dict[str, Any] = {"id": completion_id, "body": body, "config": asdict(config), "outcome": "open",
                                  "client": client}  # the caller's address: tells a reused connection
        self.requests.append(record)

        if config.fault == "http_429":
            record["outcome"] = "http_429"
            return _error(429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded", {"retry-after": "1"})
        if config.fault == "http_500":
            record["outcome"] = "http_500"
            return _error(500, "The server had an error while processing your request.", "server_error", None)
        if config.fault == "http_401":
            record["outcome"] = "http_401"
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")

        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": config.tokens,
                 "total_tokens": prompt_tokens + config.tokens}
        if not body.get("stream"):
            await asyncio.sleep(config.ttft)
            record["outcome"] = "complete"
            return JSONResponse(
                {
                    "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer_text(config.tokens, config.say, config.say_at)},
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
            return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

        try:
            if config.keepalive:
                for _ in range(3):
                    yield b": keep-alive\n\n"
                    await asyncio.sleep(config.ttft / 3)
            else:
                await asyncio.sleep(config.ttft)
            yield chunk({"role": "assistant", "content": ""})
            for piece in REASONING_TOKENS[: config.reasoning]:
                yield chunk({"reasoning_content": piece})
                await asyncio.sleep(config.interval)
            for index, piece in enumerate(answer_tokens(config.tokens, config.say, config.say_at)):
                if index and config.hold_after and index == config.hold_after:
                    await asyncio.wait_for(self.gate(config.gate or "default").wait(), timeout=60)
                if config.fault != "none" and index == config.fault_after:
                    record["outcome"] = config.fault
                    if config.fault == "cut":
                        raise _Cut("connection cut by the mock")
                    if config.fault == "malformed":
                        yield b'data: {"id": "broken", "choices": [\n\n'
                        return
                    if config.fault == "error_event":
                        yield b'data: {"error":{"message":"overloaded","type":"server_error","code":null}}\n\n'
                        return
                    if config.fault == "stall":
                        await asyncio.sleep(3600)
                if index:
                    await asyncio.sleep(config.interval)
                if config.stamp:
                    piece = f"{piece}@{time.monotonic_ns()}@"
                yield chunk({"content": piece})
            yield chunk({}, "stop")
            if include_usage:
                tail = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                        "system_fingerprint": "fp_mock", "choices": [], "usage": usage}
                yield b"data: " + json.dumps(tail, separators=(",", ":")).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
            record["outcome"] = "complete"
        except (asyncio.CancelledError, GeneratorExit):
            record["outcome"] = "cancelled"
            raise


def create_mock_app(config: MockConfig | None = None) -> Starlette:
    mock = MockLLM(config)
    app = mock.app()
    app.state.mock = mock
    return app
