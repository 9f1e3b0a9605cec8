"""Baidu ERNIE v1 end to end: the fake follows Baidu's documented fields, the adapter relays it."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from chatrelay_dev.mockllm import answer_text, answer_tokens
from chatrelay_dev.mockllm.baidu_fake import BaiduFakeConfig, create_baidu_fake
from chatrelay_dev.mockllm.common import literal_tokens
from tests.conftest import login
from tests.support.providers import fake_requests, get_turn, write_providers_file
from tests.support.servers import ServerThread, get_json
from tests.support.sse_client import stream_chat
from tests.support.tricky import TRICKY_ANSWER, answer_directive, stream_tricky_answer

AK, SK = "ak-chatrelay-test", "sk-chatrelay-test"
CHAT = "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/completions_pro"


@pytest.fixture(scope="module")
def baidu_fake():
    config = BaiduFakeConfig(ttft=0.01, interval=0.005, tokens=12, api_key=AK, secret_key=SK)
    server = ServerThread(create_baidu_fake(config)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ernie_app(start_app, baidu_fake, tmp_path_factory):
    path = write_providers_file(tmp_path_factory.mktemp("baidu"), {
        "ernie": {"kind": "baidu_ernie", "base_url": baidu_fake.url, "model": "completions_pro",
                  "api_key": AK, "secret_key": SK},
    }, fmt="json")
    return start_app(providers_file=path)


@pytest.fixture
def ernie_token(ernie_app, user):
    return login(ernie_app.url, user)


def _token(baidu_fake) -> str:
    response = httpx.post(f"{baidu_fake.url}/oauth/2.0/token", params={
        "grant_type": "client_credentials", "client_id": AK, "client_secret": SK})
    response.raise_for_status()
    return response.json()["access_token"]


# --- the fake follows Baidu's documented wire format ------------------------------------------------

def test_token_endpoint_and_a_streamed_answer_in_baidus_fields(baidu_fake):
    body = httpx.post(f"{baidu_fake.url}/oauth/2.0/token", params={
        "grant_type": "client_credentials", "client_id": AK, "client_secret": SK}).json()
    assert set(body) >= {"access_token", "expires_in", "refresh_token", "scope"}
    assert body["expires_in"] == 2592000
    with httpx.stream("POST", baidu_fake.url + CHAT, params={"access_token": body["access_token"]},
                      json={"messages": [{"role": "user", "content": "hi [mock tokens=3]"}], "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    events = [json.loads(line.removeprefix("data: ")) for line in lines]
    assert [e["sentence_id"] for e in events] == [0, 1, 2]
    assert [e["is_end"] for e in events] == [False, False, True]
    assert "".join(e["result"] for e in events) == answer_text(3)
    assert set(events[-1]) >= {"id", "object", "created", "sentence_id", "is_end", "is_truncated", "result",
                               "need_clear_history", "usage"}
    assert events[-1]["usage"]["completion_tokens"] == 3


def test_a_literal_answer_is_sent_raw_in_baidus_fields(baidu_fake):
    with httpx.stream("POST", baidu_fake.url + CHAT, params={"access_token": _token(baidu_fake)},
                      json={"messages": [{"role": "user", "content": answer_directive()}], "stream": True}) as r:
        raw = r.read()
    # U+2028 stands raw in the JSON, as json.dumps(ensure_ascii=False) writes it; events end at LF LF only.
    assert "\u2028".encode() in raw and b"\\u2028" not in raw
    events = [json.loads(line.removeprefix(b"data: ")) for line in raw.split(b"\n\n") if line]
    assert [e["result"] for e in events] == literal_tokens(TRICKY_ANSWER)
    assert [e["is_end"] for e in events][-2:] == [False, True]
    assert events[-1]["usage"]["completion_tokens"] == len(events)


def test_errors_are_plain_json_with_status_200(baidu_fake):
    refused = httpx.post(f"{baidu_fake.url}/oauth/2.0/token", params={
        "grant_type": "client_credentials", "client_id": AK, "client_secret": "wrong"})
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    bad_token = httpx.post(baidu_fake.url + CHAT, params={"access_token": "nope"},
                           json={"messages": [{"role": "user", "content": "x"}], "stream": True})
    assert bad_token.status_code == 200 and bad_token.headers["content-type"] == "application/json"
    assert bad_token.json()["error_code"] == 110
    token = _token(baidu_fake)
    even = httpx.post(baidu_fake.url + CHAT, params={"access_token": token}, json={
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "stream": True})
    assert even.status_code == 200 and even.json()["error_code"] == 336006
    system_role = httpx.post(baidu_fake.url + CHAT, params={"access_token": token}, json={
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "b"}], "stream": True})
    assert system_role.json()["error_code"] == 336003
    limited = httpx.post(baidu_fake.url + CHAT, params={"access_token": token}, json={
        "messages": [{"role": "user", "content": "[mock fault=http_429]"}], "stream": True})
    assert limited.status_code == 200 and limited.json()["error_code"] == 336501


# --- the adapter through /v1/chat/stream --------------------------------------------------------------

def test_answer_streams_through_the_relay_and_is_stored_with_usage(ernie_app, ernie_token, baidu_fake):
    marker = uuid.uuid4().hex
    result = stream_chat(ernie_app.url, ernie_token, {"prompt": f"{marker} [mock tokens=8]", "model": "ernie"})
    assert result.status == 200
    assert result.deltas == answer_tokens(8)
    assert result.done["finishReason"] == "stop"
    usage = result.done["usage"]
    assert usage["completionTokens"] == 8 and usage["totalTokens"] == usage["promptTokens"] + 8
    turn = get_turn(ernie_app.url, ernie_token, result.meta["messageId"])
    assert turn["status"] == "complete" and turn["answer"] == answer_text(8) and turn["usage"] == usage
    assert turn["provider"] == "ernie"
    [seen] = fake_requests(baidu_fake.url, marker)
    assert seen["model"] == "completions_pro"
    assert seen["body"]["system"] == "You are a helpful assistant."  # top-level, not a message
    assert [m["role"] for m in seen["body"]["messages"]] == ["user"]


def test_multi_turn_history_alternates_and_ends_with_the_user(ernie_app, ernie_token, baidu_fake):
    first = stream_chat(ernie_app.url, ernie_token, {"prompt": "first [mock tokens=2]", "model": "ernie"})
    marker = uuid.uuid4().hex
    second = stream_chat(ernie_app.url, ernie_token, {"prompt": marker, "model": "ernie",
                                                       "conversationId": first.meta["conversationId"]})
    assert second.done["finishReason"] == "stop"
    [seen] = fake_requests(baidu_fake.url, marker)
    assert [m["role"] for m in seen["body"]["messages"]] == ["user", "assistant", "user"]


def test_an_expired_token_is_refreshed_once_and_the_answer_still_streams(ernie_app, ernie_token, baidu_fake):
    stream_chat(ernie_app.url, ernie_token, {"prompt": "warm up [mock tokens=1]", "model": "ernie"})
    before = get_json(f"{baidu_fake.url}/_mock/tokens")["requests"]
    httpx.post(f"{baidu_fake.url}/_mock/expire_tokens").raise_for_status()
    result = stream_chat(ernie_app.url, ernie_token, {"prompt": "after expiry [mock tokens=4]", "model": "ernie"})
    assert result.text == answer_text(4) and result.error is None
    assert get_json(f"{baidu_fake.url}/_mock/tokens")["requests"] == before + 1
    again = stream_chat(ernie_app.url, ernie_token, {"prompt": "cached [mock tokens=2]", "model": "ernie"})
    assert again.text == answer_text(2)
    assert get_json(f"{baidu_fake.url}/_mock/tokens")["requests"] == before + 1  # the new token is cached


@pytest.mark.parametrize(("directive", "code"), [
    ("fault=http_429", "upstream_rate_limited"),    # 336501 Rpm limit reached
    ("fault=qps_limit", "upstream_rate_limited"),   # 18
    ("error_code=336502", "upstream_rate_limited"),  # Tpm limit reached
    ("fault=http_401", "upstream_auth_failed"),     # 110 even after a fresh token
    ("fault=http_500", "upstream_error"),           # 336000
    ("error_code=336003", "upstream_error"),
    ("fault=malformed fault_after=2", "upstream_bad_response"),
])
def test_vendor_errors_become_error_events_with_stable_codes(ernie_app, ernie_token, directive, code):
    result = stream_chat(ernie_app.url, ernie_token, {"prompt": f"[mock {directive}]", "model": "ernie"})
    assert result.status == 200
    assert result.error["code"] == code
    turn = get_turn(ernie_app.url, ernie_token, result.meta["messageId"])
    assert turn["status"] == "failed" and turn["errorCode"] == code


def test_a_cut_connection_leaves_a_failed_turn_with_the_partial_answer(ernie_app, ernie_token):
    result = stream_chat(ernie_app.url, ernie_token, {"prompt": "[mock tokens=10 fault=cut fault_after=4]",
                                                       "model": "ernie"})
    assert result.text == answer_text(4)
    assert result.error["code"] == "upstream_disconnected"
    turn = get_turn(ernie_app.url, ernie_token, result.meta["messageId"])
    assert turn["status"] == "failed" and turn["answer"] == answer_text(4)


def test_an_answer_with_unicode_line_breaks_streams_and_is_stored_byte_for_byte(ernie_app, ernie_token):
    result, turn = stream_tricky_answer(ernie_app.url, ernie_token, "ernie")
    assert result.error is None and result.done["finishReason"] == "stop"
    assert result.deltas == literal_tokens(TRICKY_ANSWER) and result.text == TRICKY_ANSWER
    assert turn["status"] == "complete" and turn["answer"] == TRICKY_ANSWER and turn["provider"] == "ernie"
