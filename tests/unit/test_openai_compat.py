"""The OpenAI-compatible provider against canned wire bytes (httpx.MockTransport)."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from chatrelay import errors
from chatrelay.providers.base import ChatMessage, StreamParams
from chatrelay.providers.openai_compat import OpenAICompatProvider
from tests.support.tricky import TRICKY_ANSWER, TRICKY_PIECES, in_pieces

MESSAGES = [ChatMessage("user", "hi")]


def _chunk(content=None, reasoning=None, finish=None, choices=True, usage=None) -> bytes:
    delta = {}
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    obj = {"id": "x", "object": "chat.completion.chunk",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
    if usage:
        obj["usage"] = usage
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


def _provider(handler) -> tuple[OpenAICompatProvider, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return OpenAICompatProvider("vendor", "https://llm.example/v1", "sk-1", client=client), seen


def _collect(provider):
    async def run():
        return [d async for d in provider.stream(MESSAGES, StreamParams(model="m", max_tokens=9))]

    return anyio.run(run)


def _sse(*parts: bytes, status=200, content_type="text/event-stream") -> httpx.Response:
    return httpx.Response(status, headers={"content-type": content_type}, content=b"".join(parts))


def test_parses_deltas_keepalive_comments_usage_chunk_and_done():
    body = (b": keep-alive\n\n", _chunk(""), _chunk("Hel"), b": keep-alive\n\n", _chunk("lo\n\nworld"),
            _chunk(finish="stop"), _chunk(choices=False, usage={"prompt_tokens": 3, "completion_tokens": 2,
                                                                 "total_tokens": 5}), b"data: [DONE]\n\n")
    provider, seen = _provider(lambda r: _sse(*body))
    deltas = _collect(provider)
    assert "".join(d.text for d in deltas) == "Hello\n\nworld"
    assert deltas[-2].finish_reason == "stop"
    assert deltas[-1].usage.total_tokens == 5
    sent = json.loads(seen[0].content)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 9 and sent["messages"] == [{"role": "user", "content": "hi"}]
    assert seen[0].headers["authorization"] == "Bearer sk-1"
    assert seen[0].url == "https://llm.example/v1/chat/completions"


def test_reasoning_content_is_separate_from_text():
    provider, _ = _provider(lambda r: _sse(_chunk(reasoning="think"), _chunk("answer"), _chunk(finish="stop"),
                                           b"data: [DONE]\n\n"))
    deltas = _collect(provider)
    assert [d.reasoning for d in deltas if d.reasoning] == ["think"]
    assert [d.text for d in deltas if d.text] == ["answer"]


def test_crlf_framing_and_multibyte_text():
    body = _chunk("你好😀").replace(b"\n", b"\r\n") + _chunk(finish="stop").replace(b"\n", b"\r\n")
    provider, _ = _provider(lambda r: _sse(body))
    assert "".join(d.text for d in _collect(provider)) == "你好😀"


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("read_size", [1, 5, 64 * 1024])
def test_an_answer_with_unicode_line_breaks_survives_any_framing_and_any_read_boundaries(newline, read_size):
    # U+2028, U+2029 and U+0085 stand raw inside the JSON (ensure_ascii=False, as vendors send them);
    # reads of 1 and 5 bytes split characters and CRLFs (a CR ending one read, its LF the next).
    body = b"".join([*(_chunk(p) for p in TRICKY_PIECES), _chunk(finish="stop"), b"data: [DONE]\n\n"])
    assert "\u2028".encode() in body and b"\\u2028" not in body
    body = body.replace(b"\n", newline)
    provider, _ = _provider(lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"},
                                                     content=in_pieces(body, read_size)))
    deltas = _collect(provider)
    assert [d.text for d in deltas if d.text] == TRICKY_PIECES
    assert "".join(d.text for d in deltas) == TRICKY_ANSWER and deltas[-1].finish_reason == "stop"


def test_finish_without_done_is_tolerated():
    provider, _ = _provider(lambda r: _sse(_chunk("a"), _chunk(finish="length")))
    assert [d.finish_reason for d in _collect(provider)][-1] == "length"


def test_stream_that_ends_before_finishing_is_a_disconnect():
    provider, _ = _provider(lambda r: _sse(_chunk("a"), _chunk("b")))
    with pytest.raises(errors.UpstreamDisconnected):
        _collect(provider)


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(429, errors.UpstreamRateLimited, True), (401, errors.UpstreamAuthError, False),
     (503, errors.UpstreamHTTPError, True), (400, errors.UpstreamHTTPError, False)],
)
def test_http_errors_with_plain_json_bodies(status, error, retryable):
    body = json.dumps({"error": {"message": "nope", "type": "x", "code": "y"}}).encode()
    provider, _ = _provider(
        lambda r: httpx.Response(status, headers={"content-type": "application/json"}, content=body))
    with pytest.raises(error) as caught:
        _collect(provider)
    assert "nope" in caught.value.message
    assert caught.value.status == status
    assert caught.value.retryable is retryable


def test_error_json_with_status_200_is_an_error():
    body = json.dumps({"error_code": 18, "error_msg": "Open api qps request limit reached"}).encode()
    provider, _ = _provider(lambda r: httpx.Response(200, headers={"content-type": "application/json"}, content=body))
    with pytest.raises(errors.UpstreamHTTPError, match="qps"):
        _collect(provider)


def test_error_object_inside_the_stream():
    provider, _ = _provider(lambda r: _sse(_chunk("a"), b'data: {"error": {"message": "overloaded"}}\n\n'))
    with pytest.raises(errors.UpstreamHTTPError, match="overloaded"):
        _collect(provider)


def test_malformed_chunk():
    provider, _ = _provider(lambda r: _sse(_chunk("a"), b"data: {broken\n\n"))
    with pytest.raises(errors.UpstreamProtocolError):
        _collect(provider)


def test_non_streaming_json_answer_is_one_delta():
    body = {"choices": [{"message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    provider, _ = _provider(lambda r: httpx.Response(200, json=body))
    [delta] = _collect(provider)
    assert delta.text == "whole" and delta.usage.total_tokens == 2


def test_connection_errors_map_to_unavailable():
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    provider, _ = _provider(refuse)
    with pytest.raises(errors.UpstreamUnavailable):
        _collect(provider)
