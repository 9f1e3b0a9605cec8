"""The Baidu ERNIE v1 adapter against canned wire bytes (httpx.MockTransport)."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from chatrelay import errors
from chatrelay.providers.baidu_ernie import BaiduErnieProvider
from chatrelay.providers.base import ChatMessage, StreamParams, Usage
from tests.support.tricky import TRICKY_ANSWER, TRICKY_PIECES, in_pieces

MESSAGES = [ChatMessage("system", "sys"), ChatMessage("user", "q1"), ChatMessage("assistant", "a1"),
            ChatMessage("user", "q2")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _event(sentence: int, result: str, *, end: bool = False, **extra) -> bytes:
    body = {"id": "as-1", "object": "chat.completion", "created": 1, "sentence_id": sentence, "is_end": end,
            "is_truncated": False, "result": result, "need_clear_history": False,
            "usage": {"prompt_tokens": 7, "completion_tokens": sentence + 1, "total_tokens": 8 + sentence}, **extra}
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def _sse(*parts: bytes) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(parts))


def _plain_error(code: int, message: str = "error") -> httpx.Response:
    # Baidu's way: HTTP 200, a JSON body, no SSE framing.
    return httpx.Response(200, json={"error_code": code, "error_msg": message})


class Vendor:
    """A scripted Baidu: the token endpoint plus chat answers in order."""

    def __init__(self, *chats: httpx.Response, expires_in: int = 2592000) -> None:
        self.chats = list(chats)
        self.expires_in = expires_in
        self.token_calls: list[httpx.Request] = []
        self.chat_calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/2.0/token":
            self.token_calls.append(request)
            n = len(self.token_calls)
            return httpx.Response(200, json={"access_token": f"24.token{n}", "expires_in": self.expires_in})
        self.chat_calls.append(request)
        return self.chats.pop(0)


def _provider(vendor: Vendor, clock: Clock | None = None) -> BaiduErnieProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(vendor))
    return BaiduErnieProvider("ernie", "AK", "SK", "https://aip.example", client=client, clock=clock or Clock())


def _collect(provider, messages=MESSAGES, max_tokens=None):
    async def run():
        params = StreamParams(model="completions_pro", max_tokens=max_tokens)
        return [d async for d in provider.stream(messages, params)]

    return anyio.run(run)


def test_streams_results_with_system_apart_and_usage_from_the_last_event():
    vendor = Vendor(_sse(_event(0, "你好"), _event(1, "，世界"), _event(2, "!", end=True, finish_reason="normal")))
    deltas = _collect(_provider(vendor), max_tokens=100)
    assert "".join(d.text for d in deltas) == "你好，世界!"
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage == Usage(7, 3, 10)
    token_request = vendor.token_calls[0]
    assert token_request.method == "POST"
    assert dict(token_request.url.params) == {"grant_type": "client_credentials", "client_id": "AK",
                                              "client_secret": "SK"}
    chat = vendor.chat_calls[0]
    assert chat.url.path == "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/completions_pro"
    assert chat.url.params["access_token"] == "24.token1"
    body = json.loads(chat.content)
    assert body["system"] == "sys" and body["stream"] is True and body["max_output_tokens"] == 100
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("read_size", [1, 5, 64 * 1024])
def test_an_answer_with_unicode_line_breaks_survives_any_framing_and_any_read_boundaries(newline, read_size):
    # U+2028, U+2029 and U+0085 raw inside the JSON; reads of 1 and 5 bytes split characters and
    # CRLFs (a CR ending one read, its LF the next).
    last = len(TRICKY_PIECES) - 1
    body = b"".join(_event(i, p, end=i == last) for i, p in enumerate(TRICKY_PIECES)).replace(b"\n", newline)
    vendor = Vendor(httpx.Response(200, headers={"content-type": "text/event-stream"},
                                   content=in_pieces(body, read_size)))
    deltas = _collect(_provider(vendor))
    assert [d.text for d in deltas] == TRICKY_PIECES
    assert "".join(d.text for d in deltas) == TRICKY_ANSWER and deltas[-1].finish_reason == "stop"


def test_history_is_made_to_alternate_and_end_with_the_user():
    vendor = Vendor(_sse(_event(0, "ok", end=True)))
    messages = [ChatMessage("assistant", "stray"), ChatMessage("user", "a"), ChatMessage("user", "b")]
    _collect(_provider(vendor), messages)
    assert json.loads(vendor.chat_calls[0].content)["messages"] == [{"role": "user", "content": "a\n\nb"}]


def test_the_token_is_cached_until_it_is_about_to_expire():
    clock = Clock()
    vendor = Vendor(*[_sse(_event(0, "x", end=True)) for _ in range(3)], expires_in=1000)
    provider = _provider(vendor, clock)
    _collect(provider)
    clock.now += 800
    _collect(provider)
    assert len(vendor.token_calls) == 1
    clock.now += 150  # within the last 10 % of its life: refreshed before it can expire in flight
    _collect(provider)
    assert len(vendor.token_calls) == 2
    assert vendor.chat_calls[2].url.params["access_token"] == "24.token2"


@pytest.mark.parametrize("code", [110, 111])
def test_an_invalid_or_expired_token_is_refreshed_once_and_the_chat_resent(code):
    vendor = Vendor(_plain_error(code, "Access token expired"), _sse(_event(0, "ok", end=True)))
    deltas = _collect(_provider(vendor))
    assert deltas[-1].text == "ok"
    assert len(vendor.token_calls) == 2
    assert [c.url.params["access_token"] for c in vendor.chat_calls] == ["24.token1", "24.token2"]


def test_a_token_refused_twice_is_an_auth_error():
    vendor = Vendor(_plain_error(110), _plain_error(110))
    with pytest.raises(errors.UpstreamAuthError, match="error 110"):
        _collect(_provider(vendor))
    assert len(vendor.token_calls) == 2 and len(vendor.chat_calls) == 2


@pytest.mark.parametrize(("code", "cls", "retryable"), [
    (4, errors.UpstreamRateLimited, True),
    (17, errors.UpstreamRateLimited, True),
    (18, errors.UpstreamRateLimited, True),
    (336501, errors.UpstreamRateLimited, True),
    (336502, errors.UpstreamRateLimited, True),
    (6, errors.UpstreamAuthError, False),
    (336000, errors.UpstreamHTTPError, True),
    (336100, errors.UpstreamHTTPError, True),
    (336003, errors.UpstreamHTTPError, False),
    (336006, errors.UpstreamHTTPError, False),
])
def test_plain_json_errors_with_status_200_map_by_code(code, cls, retryable):
    vendor = Vendor(_plain_error(code, "boom"))
    with pytest.raises(cls) as caught:
        _collect(_provider(vendor))
    assert type(caught.value) is cls
    assert caught.value.retryable is retryable
    assert caught.value.details["vendorCode"] == code and f"error {code}: boom" in caught.value.message
    assert len(vendor.token_calls) == 1  # only 110/111 refresh the token


def test_an_error_line_in_the_middle_of_the_stream_and_a_cut_stream():
    vendor = Vendor(_sse(_event(0, "a"), b'{"error_code":336100,"error_msg":"try again later"}\n'))
    with pytest.raises(errors.UpstreamHTTPError, match="336100"):
        _collect(_provider(vendor))
    vendor = Vendor(_sse(_event(0, "a"), _event(1, "b")))
    with pytest.raises(errors.UpstreamDisconnected):
        _collect(_provider(vendor))


def test_a_refused_key_pair_is_an_auth_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client", "error_description": "unknown client id"})

    provider = BaiduErnieProvider("ernie", "AK", "SK", "https://aip.example",
                                  client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    with pytest.raises(errors.UpstreamAuthError, match="unknown client id"):
        _collect(provider)


def test_a_flagged_answer_finishes_as_content_filter():
    vendor = Vendor(_sse(_event(0, "", end=True, need_clear_history=True, ban_round=-1)))
    assert _collect(_provider(vendor))[-1].finish_reason == "content_filter"
