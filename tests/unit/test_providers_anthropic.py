"""The Anthropic Messages adapter against canned wire bytes (httpx.MockTransport)."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from chatrelay import errors
from chatrelay.providers.anthropic_messages import AnthropicProvider
from chatrelay.providers.base import ChatMessage, StreamParams, Usage
from tests.support.tricky import TRICKY_ANSWER, TRICKY_PIECES, in_pieces

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "q1"), ChatMessage("assistant", "a1"),
            ChatMessage("user", "q2")]


def _event(name: str, data: dict, *, ensure_ascii: bool = True) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=ensure_ascii)}\n\n".encode()


START = _event("message_start", {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude",
    "usage": {"input_tokens": 25, "output_tokens": 1}}})
TEXT_START = _event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})
PING = _event("ping", {"type": "ping"})
STOP_BLOCK = _event("content_block_stop", {"type": "content_block_stop", "index": 0})
END = (_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                "usage": {"output_tokens": 15}})
       + _event("message_stop", {"type": "message_stop"}))


def _text(t: str, index: int = 0, *, ensure_ascii: bool = True) -> bytes:
    return _event("content_block_delta", {"type": "content_block_delta", "index": index,
                                          "delta": {"type": "text_delta", "text": t}}, ensure_ascii=ensure_ascii)


def _provider(handler) -> tuple[AnthropicProvider, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return AnthropicProvider("claude", "sk-ant-1", "https://anthropic.example", client=client), seen


def _sse(*parts: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "text/event-stream"}, content=b"".join(parts))


def _collect(provider, max_tokens=None):
    async def run():
        return [d async for d in provider.stream(MESSAGES, StreamParams(model="claude-x", max_tokens=max_tokens))]

    return anyio.run(run)


def test_text_deltas_usage_and_the_request_shape():
    body = (START, TEXT_START, PING, _text("Hel"), _text("lo 你好"), STOP_BLOCK, END)
    provider, seen = _provider(lambda r: _sse(*body))
    deltas = _collect(provider)
    assert "".join(d.text for d in deltas) == "Hello 你好"
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage == Usage(25, 15, 40)
    assert all(d.usage is None for d in deltas[:-1])  # usage comes once, with the finish
    request = seen[0]
    assert request.url == "https://anthropic.example/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-1" and request.headers["anthropic-version"] == "2023-06-01"
    body = json.loads(request.content)
    assert body["system"] == "Be brief." and body["stream"] is True and body["model"] == "claude-x"
    assert body["max_tokens"] == 4096  # required by the API: a default applies
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("read_size", [1, 5, 64 * 1024])
def test_an_answer_with_unicode_line_breaks_survives_any_framing_and_any_read_boundaries(newline, read_size):
    # Anthropic sends U+2028, U+2029 and U+0085 raw inside the JSON; reads of 1 and 5 bytes split
    # characters and CRLFs (a CR ending one read, its LF the next).
    texts = [_text(p, ensure_ascii=False) for p in TRICKY_PIECES]
    body = b"".join([START, TEXT_START, PING, *texts, STOP_BLOCK, END]).replace(b"\n", newline)
    provider, _ = _provider(lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"},
                                                     content=in_pieces(body, read_size)))
    deltas = _collect(provider)
    assert [d.text for d in deltas if d.text] == TRICKY_PIECES
    assert "".join(d.text for d in deltas) == TRICKY_ANSWER and deltas[-1].finish_reason == "stop"


def test_thinking_deltas_become_reasoning_and_signatures_are_ignored():
    thinking = (
        _event("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "thinking", "thinking": ""}})
        + _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "thinking_delta", "thinking": "hmm"}})
        + _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "signature_delta", "signature": "sig"}})
        + _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    )
    provider, _ = _provider(lambda r: _sse(START, thinking, _text("answer", 1), END))
    deltas = _collect(provider, max_tokens=50)
    assert [d.reasoning for d in deltas if d.reasoning] == ["hmm"]
    assert [d.text for d in deltas if d.text] == ["answer"]


@pytest.mark.parametrize(("reason", "expected"), [("max_tokens", "length"), ("stop_sequence", "stop"),
                                                   ("refusal", "content_filter")])
def test_stop_reasons_are_mapped(reason, expected):
    end = (_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason},
                                    "usage": {"output_tokens": 2}}) + _event("message_stop", {"type": "message_stop"}))
    provider, _ = _provider(lambda r: _sse(START, TEXT_START, _text("a"), end))
    assert _collect(provider)[-1].finish_reason == expected


@pytest.mark.parametrize(("status", "error_type", "cls", "retryable"), [
    (429, "rate_limit_error", errors.UpstreamRateLimited, True),
    (529, "overloaded_error", errors.UpstreamHTTPError, True),
    (500, "api_error", errors.UpstreamHTTPError, True),
    (401, "authentication_error", errors.UpstreamAuthError, False),
    (403, "permission_error", errors.UpstreamAuthError, False),
    (400, "invalid_request_error", errors.UpstreamHTTPError, False),
])
def test_http_errors_map_to_the_error_tree(status, error_type, cls, retryable):
    body = {"type": "error", "error": {"type": error_type, "message": "nope"}, "request_id": "req_1"}
    provider, _ = _provider(lambda r: httpx.Response(status, json=body, headers={"retry-after": "3"}))
    with pytest.raises(cls) as caught:
        _collect(provider)
    assert type(caught.value) is cls and caught.value.status == status
    assert caught.value.retryable is retryable
    assert error_type in caught.value.message


def test_an_error_event_mid_stream_is_an_upstream_error():
    error = _event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    provider, _ = _provider(lambda r: _sse(START, TEXT_START, _text("a"), error))
    with pytest.raises(errors.UpstreamHTTPError, match="overloaded_error") as caught:
        _collect(provider)
    assert caught.value.status == 529 and caught.value.retryable


def test_a_stream_without_message_stop_is_a_disconnect_and_garbage_is_a_bad_response():
    provider, _ = _provider(lambda r: _sse(START, TEXT_START, _text("a")))
    with pytest.raises(errors.UpstreamDisconnected):
        _collect(provider)
    provider, _ = _provider(lambda r: _sse(START, b"event: content_block_delta\ndata: {nope\n\n"))
    with pytest.raises(errors.UpstreamProtocolError):
        _collect(provider)


def test_connection_errors_are_upstream_unavailable():
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    provider, _ = _provider(refuse)
    with pytest.raises(errors.UpstreamUnavailable):
        _collect(provider)
