"""Isolation: another user's token gets 404 (never 403, never the data) on every route.

The route table below must name every ``/v1`` operation in the OpenAPI schema, so
a new route cannot be added without saying how it is isolated.
"""

from __future__ import annotations

import base64
import time
import uuid

import httpx
import jwt
import pytest

from tests.conftest import TOKEN_SECRET, login
from tests.support.sse_client import stream_chat
from tests.support.wechat import wechat_token

# How each operation is isolated:
#   owned     - addresses the owner's conversation or message: the intruder gets 404
#   own-only  - acts on the caller's own data only: checked below that the owner's is untouched
#   no-data   - touches no user data
ROUTES = {
    ("GET", "/v1/conversations"): "own-only",
    ("GET", "/v1/conversations/{conversation_id}/messages"): "owned",
    ("DELETE", "/v1/conversations/{conversation_id}"): "owned",
    ("GET", "/v1/messages/{message_id}"): "owned",
    ("PUT", "/v1/messages/{message_id}/feedback"): "owned",
    ("POST", "/v1/messages/{message_id}/stop"): "owned",
    ("GET", "/v1/messages/{message_id}/stream"): "owned",
    ("POST", "/v1/chat/stream"): "owned",  # with the owner's conversationId
    ("POST", "/v1/chat/completions"): "owned",  # with the owner's conversation id
    ("GET", "/v1/requests/{request_id}"): "owned",  # the owner's requestId names nothing of the intruder's
    ("POST", "/v1/requests/{request_id}/stop"): "own-only",  # stops (or pre-stops) the caller's own request
    ("POST", "/v1/ui/chat"): "own-only",  # a chat id names a chat within the caller's own keys
    ("GET", "/v1/ui/chat/{chat_id}/stream"): "own-only",
    ("DELETE", "/v1/me/data"): "own-only",
    ("POST", "/v1/auth/refresh"): "own-only",  # a token names its user; a forged one revokes nothing
    ("POST", "/v1/auth/wechat"): "no-data",
    ("POST", "/v1/auth/dev"): "no-data",
    ("GET", "/v1/models"): "no-data",
}


@pytest.fixture(scope="module")
def server(wechat_server):
    return wechat_server


def test_the_route_table_covers_every_v1_operation(server):
    schema = httpx.get(f"{server.url}/openapi.json").json()
    operations = {(method.upper(), path) for path, item in schema["paths"].items() if path.startswith("/v1")
                  for method in item}
    assert operations == set(ROUTES)


def test_another_users_token_gets_404_on_every_owned_route(server):
    owner = wechat_token(server.url, f"owner-{uuid.uuid4().hex[:8]}")
    request_id = uuid.uuid4().hex
    first = stream_chat(server.url, owner["token"], {"prompt": "mine [mock tokens=3]", "requestId": request_id})
    cid, mid = first.meta["conversationId"], first.meta["messageId"]
    intruder_token = login(server.url, f"intruder-{uuid.uuid4().hex[:8]}")
    owned = {
        ("GET", "/v1/conversations/{conversation_id}/messages"): ("GET", f"/v1/conversations/{cid}/messages", None),
        ("DELETE", "/v1/conversations/{conversation_id}"): ("DELETE", f"/v1/conversations/{cid}", None),
        ("GET", "/v1/messages/{message_id}"): ("GET", f"/v1/messages/{mid}", None),
        ("PUT", "/v1/messages/{message_id}/feedback"): ("PUT", f"/v1/messages/{mid}/feedback", {"useful": -1}),
        ("POST", "/v1/messages/{message_id}/stop"): ("POST", f"/v1/messages/{mid}/stop", None),
        ("GET", "/v1/messages/{message_id}/stream"): ("GET", f"/v1/messages/{mid}/stream", None),
        ("POST", "/v1/chat/stream"): ("POST", "/v1/chat/stream", {"prompt": "x", "conversationId": cid}),
        ("GET", "/v1/requests/{request_id}"): ("GET", f"/v1/requests/{request_id}", None),
        ("POST", "/v1/chat/completions"): ("POST", "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "x"}], "metadata": {"conversation_id": cid}}),
    }
    assert set(owned) == {op for op, kind in ROUTES.items() if kind == "owned"}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {intruder_token}"}, timeout=10) as other:
        for method, path, body in owned.values():
            response = other.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            error = response.json()
            assert error.get("code", error.get("error", {}).get("code")) == "not_found"  # ours, or OpenAI's shape
        # Own-only routes: the intruder sees and erases only its own (empty) data.
        assert other.get("/v1/conversations").json()["items"] == []
        assert other.delete("/v1/me/data").status_code == 204
        # The owner's conversation id as an AI SDK chat id is a new chat in the intruder's own keys.
        assert other.get(f"/v1/ui/chat/{cid}/stream").status_code == 204
        ui = other.post("/v1/ui/chat", json={"id": cid, "messages": [
            {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "x [mock tokens=1]"}]}]})
        assert ui.status_code == 200 and ui.headers["x-message-id"] != mid
        [own] = other.get(f"/v1/conversations/{cid}/messages").json()["items"]
        assert own["question"] == "x [mock tokens=1]"
        assert other.delete("/v1/me/data").status_code == 204
        # The owner's requestId is just a new request for the intruder, not a replay of the owner's turn.
        replay = stream_chat(server.url, intruder_token, {"prompt": "x [mock tokens=1]", "requestId": request_id})
        assert replay.status == 200 and replay.meta["messageId"] != mid
        # Stopping "the owner's" request id stops the intruder's own turn of that id, never the owner's.
        stopped = other.post(f"/v1/requests/{request_id}/stop")
        assert stopped.status_code == 202 and stopped.json()["messageId"] == replay.meta["messageId"]
        # A refresh token forged with the owner's user id revokes nothing.
        owner_uid = jwt.decode(owner["token"], options={"verify_signature": False})["sub"]
        forged = base64.urlsafe_b64encode(owner_uid.encode()).decode().rstrip("=") + ".some-family.guessed"
        assert other.post("/v1/auth/refresh", json={"refreshToken": forged}).status_code == 401
    # The owner's data is untouched, and the owner's refresh token still works.
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {owner['token']}"}, timeout=10) as api:
        [turn] = api.get(f"/v1/conversations/{cid}/messages").json()["items"]
        assert turn["useful"] == 0 and turn["status"] == "complete" and turn["answer"]
        assert [c["conversationId"] for c in api.get("/v1/conversations").json()["items"]] == [cid]
    refreshed = httpx.post(f"{server.url}/v1/auth/refresh", json={"refreshToken": owner["refreshToken"]})
    assert refreshed.status_code == 200



def test_a_token_whose_user_id_ends_with_a_newline_is_refused(server, user):
    """``$`` in a pattern also matches before a final newline: the user id must match whole."""
    token = login(server.url, user)
    stream_chat(server.url, token, {"prompt": "mine [mock tokens=1]"})
    now = int(time.time())
    for sub in (f"{user}\n", "\n", f"{user}\r\n"):
        forged = jwt.encode({"sub": sub, "iss": "chatrelay", "aud": "chatrelay-client", "iat": now, "exp": now + 60},
                            TOKEN_SECRET, algorithm="HS256")
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {forged}"}, timeout=10) as api:
            for method, path, body in (("GET", "/v1/conversations", None), ("DELETE", "/v1/me/data", None),
                                       ("POST", "/v1/chat/stream", {"prompt": "x [mock tokens=1]"})):
                response = api.request(method, path, json=body)
                assert response.status_code == 401, (sub, method, path, response.text)
                assert response.json()["code"] == "unauthorized"
    # Nor can a dev login or a refresh token name such a user.
    assert httpx.post(f"{server.url}/v1/auth/dev", json={"userId": f"{user}\n"}, timeout=10).status_code == 422
    forged_refresh = base64.urlsafe_b64encode(f"{user}\n".encode()).decode().rstrip("=") + ".family.secret"
    assert httpx.post(f"{server.url}/v1/auth/refresh", json={"refreshToken": forged_refresh},
                      timeout=10).status_code == 401
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        assert len(api.get("/v1/conversations").json()["items"]) == 1  # the owner's data is untouched
