"""Data rights: ``DELETE /v1/me/data`` erases everything of a user; logs never carry raw user ids."""

from __future__ import annotations

import io
import json
import logging
import uuid

import httpx
import pytest

from chatrelay.observability import hash_user_id, logger
from chatrelay_dev.local.dynamodb_local import local_client
from tests.conftest import TABLE, login
from tests.support.sse_client import stream_chat
from tests.support.wechat import wechat_settings, wechat_token


@pytest.fixture(scope="module")
def server(start_app, wechat):
    # Every quota on, so that the user owns quota items too; content checks on (keywords).
    return start_app(**wechat_settings(wechat, rate_limit_per_minute=100, token_quota_per_day=1_000_000,
                                       max_concurrent_streams=5, content_safety="wechat",
                                       content_safety_keywords=["kw-blocked"]))


def _items(dynamodb, user_id: str) -> list[str]:
    response = local_client(dynamodb.endpoint).query(
        TableName=TABLE, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": f"USER#{user_id}"}},
        ConsistentRead=True)
    return sorted(item["sk"]["S"].split("#")[0] + "#" + item["sk"]["S"].split("#")[1] for item in response["Items"])


def _sub(token: str) -> str:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})["sub"]


def test_delete_my_data_removes_everything_of_mine_and_nothing_else(server, dynamodb):
    pair = wechat_token(server.url, f"erase-{uuid.uuid4().hex[:8]}")
    user_id = _sub(pair["token"])
    bystander = f"bystander-{uuid.uuid4().hex[:8]}"
    bystander_token = login(server.url, bystander)
    first = stream_chat(server.url, pair["token"], {"prompt": "one [mock tokens=2]"})
    stream_chat(server.url, pair["token"], {"prompt": "two [mock tokens=2]",
                                            "conversationId": first.meta["conversationId"]})
    stream_chat(server.url, pair["token"], {"prompt": "three [mock tokens=2]"})
    stream_chat(server.url, bystander_token, {"prompt": "theirs [mock tokens=2]"})
    kinds = {sk.split("#")[0] for sk in _items(dynamodb, user_id)}
    assert kinds == {"CONV", "MSG", "REFRESH", "QUOTA"}

    headers = {"Authorization": f"Bearer {pair['token']}"}
    response = httpx.delete(f"{server.url}/v1/me/data", headers=headers)
    assert response.status_code == 204 and response.content == b""
    assert _items(dynamodb, user_id) == []
    assert httpx.get(f"{server.url}/v1/conversations", headers=headers).json()["items"] == []
    assert httpx.get(f"{server.url}/v1/messages/{first.meta['messageId']}", headers=headers).status_code == 404
    refused = httpx.post(f"{server.url}/v1/auth/refresh", json={"refreshToken": pair["refreshToken"]})
    assert refused.status_code == 401
    # Repeating it is harmless; the bystander keeps everything.
    assert httpx.delete(f"{server.url}/v1/me/data", headers=headers).status_code == 204
    assert len(httpx.get(f"{server.url}/v1/conversations",
                         headers={"Authorization": f"Bearer {bystander_token}"}).json()["items"]) == 1


def test_delete_my_data_pages_through_many_items(server, dynamodb, user):
    token = login(server.url, user)
    for i in range(30):
        stream_chat(server.url, token, {"prompt": f"q{i} [mock tokens=1]"})
    assert len(_items(dynamodb, user)) > 60
    assert httpx.delete(f"{server.url}/v1/me/data", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    assert _items(dynamodb, user) == []


def test_delete_my_data_needs_a_token(server):
    assert httpx.delete(f"{server.url}/v1/me/data").status_code == 401


def test_no_raw_user_id_reaches_the_logs(server, start_app):
    pair = wechat_token(server.url, f"logged-{uuid.uuid4().hex[:8]}")
    user_id = _sub(pair["token"])
    tight = start_app(rate_limit_per_minute=1, max_concurrent_streams=1)
    plain_user = f"plain-{uuid.uuid4().hex[:8]}"
    logging.getLogger("chatrelay").setLevel(logging.INFO)
    sink = io.StringIO()
    previous = logger.registered_handler.setStream(sink)
    try:
        headers = {"Authorization": f"Bearer {pair['token']}"}
        stream_chat(server.url, pair["token"], {"prompt": "hello [mock tokens=1]"})
        stream_chat(server.url, pair["token"], {"prompt": "forbidden-word"})  # a blocked question
        renewed = httpx.post(f"{server.url}/v1/auth/refresh", json={"refreshToken": pair["refreshToken"]})
        assert renewed.status_code == 200
        httpx.post(f"{server.url}/v1/auth/refresh", json={"refreshToken": pair["refreshToken"]})  # a replay
        httpx.delete(f"{server.url}/v1/me/data", headers=headers)
        plain_token = login(tight.url, plain_user)
        stream_chat(tight.url, plain_token, {"prompt": "one [mock tokens=1]"})
        assert stream_chat(tight.url, plain_token, {"prompt": "two [mock tokens=1]"}).status == 429
    finally:
        logging.getLogger("chatrelay").setLevel(logging.WARNING)
        logger.registered_handler.setStream(previous)
    lines = [json.loads(line) for line in sink.getvalue().splitlines() if line.startswith("{")]
    messages = {line["message"] for line in lines}
    assert {"question blocked", "refresh token refused; family revoked", "user data deleted",
            "quota refused"} <= messages
    text = sink.getvalue()
    for raw in (user_id, user_id.removeprefix("wx:"), plain_user):
        assert raw not in text
    assert hash_user_id(user_id) in text and hash_user_id(plain_user) in text
