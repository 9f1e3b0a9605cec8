"""Vendor quirks of the OpenAI-compatible presets, on canned bytes shaped like each vendor's stream."""

from __future__ import annotations

import json

import anyio
import httpx

from chatrelay.providers.base import ChatMessage, StreamParams, Usage
from chatrelay.providers.openai_compat import OpenAICompatProvider
from chatrelay.providers.registry import VENDOR_PRESETS


def _data(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


def _collect(body: bytes, include_usage: bool = True):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    provider = OpenAICompatProvider("v", "https://v.example/v1", "k", include_usage=include_usage,
                                    client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))

    async def run():
        return [d async for d in provider.stream([ChatMessage("user", "hi")], StreamParams(model="m"))]

    return anyio.run(run), json.loads(seen[0].content)


def test_moonshot_usage_inside_the_finishing_choice():
    body = (_data({"choices": [{"index": 0, "delta": {"content": "你好"}, "finish_reason": None}]})
            + _data({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop",
                                  "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}}]})
            + b"data: [DONE]\n\n")
    deltas, _ = _collect(body)
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage == Usage(8, 2, 10)


def test_zhipu_usage_on_the_finishing_chunk_without_stream_options():
    body = (_data({"id": "1", "created": 1, "model": "glm-4-flash",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "想"}}]})
            + _data({"id": "1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "好"}}]})
            + _data({"id": "1", "choices": [{"index": 0, "finish_reason": "stop", "delta": {"content": ""}}],
                     "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})
            + b"data: [DONE]\n\n")
    deltas, sent = _collect(body, include_usage=VENDOR_PRESETS["zhipu"][2])
    assert "stream_options" not in sent
    assert [d.reasoning for d in deltas if d.reasoning] == ["想"]
    assert deltas[-1].usage == Usage(5, 1, 6)


def test_deepseek_keepalive_before_the_first_chunk_and_usage_chunk_after():
    body = (b": keep-alive\n\n" * 3
            + _data({"choices": [{"index": 0, "delta": {"reasoning_content": "r"}, "finish_reason": None}]})
            + _data({"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]})
            + _data({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
            + b"data: [DONE]\n\n")
    deltas, sent = _collect(body, include_usage=VENDOR_PRESETS["deepseek"][2])
    assert sent["stream_options"] == {"include_usage": True}
    assert [(d.reasoning, d.text) for d in deltas if d.reasoning or d.text] == [("r", ""), ("", "a")]
    assert deltas[-1].usage == Usage(1, 1, 2)
