"""WeChat login and refresh tokens, against the fake WeChat server API on a real socket."""

from __future__ import annotations

import io
import json
import logging
import time

import httpx
import jwt
import pytest

from chatrelay.observability import logger
from chatrelay_dev.local.dynamodb_local import free_port
from chatrelay_dev.mockllm.wechat_fake import WeChatFakeConfig, openid_for
from tests.support.servers import get_json
from tests.support.wechat import (
    CONFIG,
    new_who,
    start_wechat_fake,
    wechat_login,
    wechat_settings,
    wechat_token,
)


@pytest.fixture(scope="module")
def server(wechat_server):
    return wechat_server


def _refresh(server, refresh_token) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/auth/refresh", json={"refreshToken": refresh_token}, timeout=10)


def _get(server, token, path="/v1/conversations") -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_login_gives_a_working_token_pair_for_the_openid(server, wechat):
    who = new_who()
    response = wechat_login(server.url, f"{who}.1")
    assert response.status_code == 200, response.text
    pair = response.json()
    assert set(pair) == {"token", "tokenType", "expiresIn", "refreshToken", "refreshExpiresIn"}
    assert pair["tokenType"] == "Bearer" and pair["expiresIn"] > 0 and pair["refreshExpiresIn"] > pair["expiresIn"]
    assert "session_key" not in response.text and "sessionKey" not in response.text
    claims = jwt.decode(pair["token"], options={"verify_signature": False})
    assert claims["sub"] == f"wx:{openid_for(CONFIG.app_id, who)}"
    assert {"exp", "iss", "aud", "iat"} <= set(claims)
    assert _get(server, pair["token"]).status_code == 200
    # The request WeChat saw: this app's id and secret, the code, the right grant type.
    [call] = [r for r in get_json(f"{wechat.url}/_mock/wechat/requests") if r.get("code") == f"{who}.1"]
    assert call["params"]["appid"] == CONFIG.app_id and call["params"]["grant_type"] == "authorization_code"


def test_the_same_wechat_user_gets_the_same_data_on_every_login(server):
    who = new_who()
    first = wechat_token(server.url, who)["token"]
    body = {"prompt": "remember me [mock tokens=2]"}
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{server.url}/v1/chat/stream", json=body,
                           headers={"Authorization": f"Bearer {first}"}) as response:
            assert response.status_code == 200
            response.read()
    second = wechat_token(server.url, who)["token"]
    assert len(_get(server, second).json()["items"]) == 1
    assert _get(server, wechat_token(server.url, new_who())["token"]).json()["items"] == []


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("invalid", 401, "wechat_code_invalid"),
        ("rate-limited", 429, "wechat_rate_limited"),
        ("high-risk", 403, "wechat_user_blocked"),
        ("busy", 503, "wechat_busy"),
    ],
)
def test_wechat_refusals_map_to_clear_codes(server, code, status, error):
    response = wechat_login(server.url, code)
    assert response.status_code == status, response.text
    assert response.json()["code"] == error
    if status in (429, 503):
        assert int(response.headers["retry-after"]) >= 1


def test_a_code_works_once(server):
    code = f"{new_who()}.once"
    assert wechat_login(server.url, code).status_code == 200
    again = wechat_login(server.url, code)
    assert again.status_code == 401 and again.json()["code"] == "wechat_code_invalid"


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": "has space"}, {"code": "x" * 129}, {"code": 5}])
def test_bad_login_bodies_are_422(server, body):
    response = httpx.post(f"{server.url}/v1/auth/wechat", json=body, timeout=10)
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"


def test_json_answers_work_as_well_as_text_plain(start_app):
    config = WeChatFakeConfig(plain_text=False)
    fake = start_wechat_fake(config)
    try:
        server = start_app(**wechat_settings(fake, config))
        assert wechat_login(server.url, "someone.1").status_code == 200
        assert wechat_login(server.url, "invalid").json()["code"] == "wechat_code_invalid"
    finally:
        fake.stop()


def test_a_wrong_app_secret_is_a_502_not_a_login(start_app, wechat):
    server = start_app(**wechat_settings(wechat, wechat_app_secret="not-the-secret"))
    response = wechat_login(server.url, f"{new_who()}.1")
    assert response.status_code == 502 and response.json()["code"] == "wechat_error"


def test_unreachable_wechat_is_a_clear_error(start_app):
    server = start_app(wechat_api_base=f"http://127.0.0.1:{free_port()}", wechat_app_id="wx1",
                       wechat_app_secret="s")
    response = wechat_login(server.url, "a.1")
    assert response.status_code == 502 and response.json()["code"] == "wechat_error"


def test_wechat_login_is_404_when_not_configured(app_server):
    response = wechat_login(app_server.url, "a.1")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_refresh_rotates_and_a_replayed_token_revokes_its_family(server):
    who = new_who()
    pair = wechat_token(server.url, who)
    other_device = wechat_token(server.url, who)  # a second login: a family of its own
    renewed = _refresh(server, pair["refreshToken"])
    assert renewed.status_code == 200, renewed.text
    new_pair = renewed.json()
    assert new_pair["refreshToken"] != pair["refreshToken"]
    assert jwt.decode(new_pair["token"], options={"verify_signature": False})["sub"] == \
        f"wx:{openid_for(CONFIG.app_id, who)}"
    assert _get(server, new_pair["token"]).status_code == 200
    # Replaying the used token (a stolen copy, say) fails and ends the family...
    replay = _refresh(server, pair["refreshToken"])
    assert replay.status_code == 401 and replay.json()["code"] == "refresh_token_invalid"
    assert replay.headers["www-authenticate"] == "Bearer"
    # ...so the legitimate holder's newer token is dead too,
    assert _refresh(server, new_pair["refreshToken"]).status_code == 401
    # but the other device's family is not touched.
    assert _refresh(server, other_device["refreshToken"]).status_code == 200


def test_refresh_tokens_expire(start_app, wechat):
    server = start_app(**wechat_settings(wechat, refresh_token_ttl_seconds=1))
    pair = wechat_token(server.url, new_who())
    time.sleep(2.1)
    response = _refresh(server, pair["refreshToken"])
    assert response.status_code == 401 and response.json()["code"] == "refresh_token_invalid"


@pytest.mark.parametrize(
    "token",
    ["", "x", "a.b", "a.b.c", "d3g6b29wcw.family.secret", "!!!.b.c", "a.b.c.d", "x" * 600],
)
def test_malformed_refresh_tokens_are_refused(server, token):
    response = _refresh(server, token)
    assert response.status_code in (401, 422)
    assert response.json()["code"] in ("refresh_token_invalid", "invalid_request")


def test_neither_the_session_key_nor_raw_ids_nor_tokens_are_logged(server):
    who = new_who()
    logging.getLogger("chatrelay").setLevel(logging.INFO)
    sink = io.StringIO()
    previous = logger.registered_handler.setStream(sink)
    try:
        pair = wechat_token(server.url, who)
        renewed = _refresh(server, pair["refreshToken"]).json()
        _refresh(server, pair["refreshToken"])  # a replay: logged as a warning
        _get(server, renewed["token"])
    finally:
        logging.getLogger("chatrelay").setLevel(logging.WARNING)
        logger.registered_handler.setStream(previous)
    text = sink.getvalue()
    assert "wechat login" in text and "family revoked" in text
    openid = openid_for(CONFIG.app_id, who)
    for secret in (openid, who, pair["refreshToken"], renewed["refreshToken"], pair["token"], "session_key",
                   CONFIG.app_secret):
        assert secret not in text
    assert all(json.loads(line).get("user") is None or len(json.loads(line)["user"]) == 16
               for line in text.splitlines() if line.startswith("{"))
