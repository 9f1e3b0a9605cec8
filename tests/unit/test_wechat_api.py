"""The WeChat server API client: login errcodes, bodies of any content type, the access token cache."""

from __future__ import annotations

import json
import logging

import anyio
import httpx
import pytest

from chatrelay import errors
from chatrelay.auth.wechat import WeChatApi, openid_of, user_id_for_openid

OPENID = "oAbCdEfGhIjKlMnOpQrStUvWxYz0"


def _api(handler, **kwargs) -> WeChatApi:
    return WeChatApi(app_id="wxapp", app_secret="s3cret", base_url="https://wx.example",
                     client=httpx.AsyncClient(transport=httpx.MockTransport(handler)), **kwargs)


def _reply(body: dict, content_type: str = "application/json", status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": content_type}, content=json.dumps(body).encode())


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "text/plain; charset=utf-8"])
def test_login_reads_the_openid_whatever_the_content_type(content_type):
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return _reply({"openid": OPENID, "session_key": "SECRET-KEY==", "unionid": "u1"}, content_type)

    identity = anyio.run(_api(handler).code_to_session, "the-code")
    assert identity.openid == OPENID and identity.unionid == "u1" and identity.user_id == f"wx:{OPENID}"
    assert "SECRET-KEY" not in repr(identity)
    assert not hasattr(identity, "session_key")
    params = seen[0].url.params
    assert seen[0].url.path == "/sns/jscode2session"
    assert dict(params) == {"appid": "wxapp", "secret": "s3cret", "js_code": "the-code",
                            "grant_type": "authorization_code"}


@pytest.mark.parametrize(
    ("errcode", "error", "status"),
    [
        (40029, errors.WeChatCodeInvalid, 401),
        (40163, errors.WeChatCodeInvalid, 401),
        (45011, errors.WeChatRateLimited, 429),
        (40226, errors.WeChatUserBlocked, 403),
        (-1, errors.WeChatBusy, 503),
        (40125, errors.WeChatError, 502),
    ],
)
def test_login_errcodes_become_the_error_tree(errcode, error, status):
    api = _api(lambda r: _reply({"errcode": errcode, "errmsg": "x rid: 1"}, "text/plain"), clock=lambda: 1_000_000_030)
    with pytest.raises(error) as caught:
        anyio.run(api.code_to_session, "c")
    assert type(caught.value) is error and caught.value.status_code == status
    if errcode == 45011:
        assert caught.value.headers == {"Retry-After": "50"}  # to the next minute
    if errcode == -1:
        assert "Retry-After" in caught.value.headers


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>gateway</html>"),
        httpx.Response(200, content=b"[1, 2]"),
        httpx.Response(200, json={"openid": "bad openid!"}),
        httpx.Response(200, json={"session_key": "k"}),
        httpx.Response(404, json={}),
    ],
)
def test_malformed_answers_are_wechat_errors(response):
    with pytest.raises(errors.WeChatError) as caught:
        anyio.run(_api(lambda r: response).code_to_session, "c")
    assert caught.value.code == "wechat_error"


def test_transport_failures_are_translated():
    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    for handler in (timeout, refused):
        with pytest.raises(errors.WeChatError):
            anyio.run(_api(handler).code_to_session, "c")
    with pytest.raises(errors.WeChatBusy):
        anyio.run(_api(lambda r: httpx.Response(502)).code_to_session, "c")


class TokenServer:
    """A handler issuing numbered tokens and refusing the ones it was told are expired."""

    def __init__(self, expires_in: int = 7200) -> None:
        self.issued = 0
        self.expires_in = expires_in
        self.refused: set[str] = set()
        self.checks: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            assert request.url.params["grant_type"] == "client_credential"
            self.issued += 1
            return _reply({"access_token": f"t{self.issued}", "expires_in": self.expires_in})
        token = request.url.params["access_token"]
        self.checks.append(token)
        if token in self.refused:
            return _reply({"errcode": 42001, "errmsg": "access_token expired"})
        return _reply({"errcode": 0, "errmsg": "ok", "echo": json.loads(request.content)})


def test_access_token_is_cached_until_shortly_before_expiry():
    now = [1000.0]
    server = TokenServer(expires_in=7200)
    api = _api(server, clock=lambda: now[0])

    async def run():
        assert await api.access_token() == "t1"
        now[0] += 6800
        assert await api.access_token() == "t1"
        now[0] += 200  # within 5 minutes of expiry
        assert await api.access_token() == "t2"

    anyio.run(run)
    assert server.issued == 2


def test_a_refused_token_is_fetched_again_once():
    server = TokenServer()
    api = _api(server)

    async def run():
        await api.access_token()
        server.refused.add("t1")
        body = await api.post_with_token("/wxa/msg_sec_check", {"content": "你好"})
        assert body["errcode"] == 0 and body["echo"] == {"content": "你好"}
        server.refused.add("t2")
        server.refused.add("t3")
        body = await api.post_with_token("/wxa/msg_sec_check", {"content": "x"})
        assert body["errcode"] == 42001  # refused twice: no loop, the caller sees the errcode

    anyio.run(run)
    assert server.checks == ["t1", "t2", "t2", "t3"]
    assert server.issued == 3


def test_concurrent_callers_share_one_token_fetch():
    server = TokenServer()
    api = _api(server)

    async def run():
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(api.access_token)

    anyio.run(run)
    assert server.issued == 1


def test_token_errors():
    api = _api(lambda r: _reply({"errcode": 40125, "errmsg": "invalid appsecret"}))
    with pytest.raises(errors.WeChatError):
        anyio.run(api.access_token)
    api = _api(lambda r: _reply({"errcode": -1, "errmsg": "busy"}))
    with pytest.raises(errors.WeChatBusy):
        anyio.run(api.access_token)


def test_credentials_in_request_urls_are_redacted_from_httpx_logs(caplog):
    api = _api(lambda r: _reply({"openid": OPENID, "session_key": "k"}))
    with caplog.at_level(logging.INFO, logger="httpx"):
        anyio.run(api.code_to_session, "one-time-code")
    text = caplog.text
    assert "jscode2session" in text
    assert "s3cret" not in text and "one-time-code" not in text


def test_user_ids_and_openids():
    assert user_id_for_openid(OPENID) == f"wx:{OPENID}"
    assert openid_of(f"wx:{OPENID}") == OPENID
    assert openid_of("user-123") is None
    assert openid_of("wx:bad id") is None
