"""Conversations, messages, feedback, stop, delete; identity and isolation; bad input."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
import pytest

from chatrelay_dev.mockllm import answer_text
from tests.conftest import TOKEN_SECRET, login
from tests.support.servers import get_json, wait_until
from tests.support.sse_client import iter_events, stream_chat


def _ask(server, token, prompt="q [mock tokens=3]", **extra):
    result = stream_chat(server.url, token, {"prompt": prompt, **extra})
    assert result.status == 200, result.raw
    return result.meta


def test_conversations_are_listed_newest_first_and_paginated(app_server, token, api):
    ids = [_ask(app_server, token, f"question {i} [mock tokens=1]")["conversationId"] for i in range(5)]
    first = api.get("/v1/conversations", params={"limit": 2}).json()
    assert [c["conversationId"] for c in first["items"]] == ids[::-1][:2]
    second = api.get("/v1/conversations", params={"limit": 2, "cursor": first["nextCursor"]}).json()
    third = api.get("/v1/conversations", params={"limit": 2, "cursor": second["nextCursor"]}).json()
    listed = [c["conversationId"] for page in (first, second, third) for c in page["items"]]
    assert listed == ids[::-1]
    # Activity moves a conversation to the top.
    _ask(app_server, token, "again [mock tokens=1]", conversationId=ids[0])
    top = api.get("/v1/conversations", params={"limit": 1}).json()["items"][0]
    assert top["conversationId"] == ids[0] and top["turnCount"] == 2


def test_messages_are_oldest_first_and_paginated(app_server, token, api):
    meta = _ask(app_server, token, "one [mock tokens=1]")
    cid = meta["conversationId"]
    mids = [meta["messageId"]] + [_ask(app_server, token, f"n{i} [mock tokens=1]", conversationId=cid)["messageId"]
                                  for i in range(3)]
    page1 = api.get(f"/v1/conversations/{cid}/messages", params={"limit": 3}).json()
    page2 = api.get(f"/v1/conversations/{cid}/messages", params={"limit": 3, "cursor": page1["nextCursor"]}).json()
    assert [t["messageId"] for t in page1["items"] + page2["items"]] == mids


def test_feedback_is_stored(app_server, token, api):
    meta = _ask(app_server, token)
    response = api.put(f"/v1/messages/{meta['messageId']}/feedback", json={"useful": -1})
    assert response.status_code == 200 and response.json()["useful"] == -1
    assert api.get(f"/v1/messages/{meta['messageId']}").json()["useful"] == -1
    assert api.put(f"/v1/messages/{meta['messageId']}/feedback", json={"useful": 1}).json()["useful"] == 1


def test_delete_conversation_removes_it_and_its_turns(app_server, token, api):
    meta = _ask(app_server, token)
    _ask(app_server, token, conversationId=meta["conversationId"])
    assert api.delete(f"/v1/conversations/{meta['conversationId']}").status_code == 204
    assert api.get(f"/v1/conversations/{meta['conversationId']}/messages").status_code == 404
    assert api.get(f"/v1/messages/{meta['messageId']}").status_code == 404
    assert all(c["conversationId"] != meta["conversationId"] for c in api.get("/v1/conversations").json()["items"])
    assert api.delete(f"/v1/conversations/{meta['conversationId']}").status_code == 404


def test_another_users_token_gets_404_on_every_route(app_server, token, api):
    meta = _ask(app_server, token)
    cid, mid = meta["conversationId"], meta["messageId"]
    intruder = {"Authorization": f"Bearer {login(app_server.url, 'intruder-' + uuid.uuid4().hex[:8])}"}
    with httpx.Client(base_url=app_server.url, headers=intruder, timeout=10) as other:
        assert other.get("/v1/conversations").json()["items"] == []
        for method, path, body in [
            ("GET", f"/v1/conversations/{cid}/messages", None),
            ("DELETE", f"/v1/conversations/{cid}", None),
            ("GET", f"/v1/messages/{mid}", None),
            ("PUT", f"/v1/messages/{mid}/feedback", {"useful": 1}),
            ("POST", f"/v1/messages/{mid}/stop", None),
        ]:
            response = other.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["code"] == "not_found"
        result = stream_chat(app_server.url, intruder["Authorization"][7:], {"prompt": "x", "conversationId": cid})
        assert result.status == 404
    # The owner's data is untouched.
    [turn] = api.get(f"/v1/conversations/{cid}/messages").json()["items"]
    assert turn["useful"] == 0 and turn["status"] == "complete"


def test_user_id_in_the_body_is_ignored(app_server, token, api, user):
    meta = _ask(app_server, token, userId="someone-else", openId="someone-else")
    assert api.get(f"/v1/conversations/{meta['conversationId']}/messages").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/conversations"), ("POST", "/v1/chat/stream"), ("GET", "/v1/models"),
     ("PUT", "/v1/messages/abc/feedback"), ("POST", "/v1/messages/abc/stop")],
)
@pytest.mark.parametrize("auth", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz"])
def test_routes_refuse_missing_or_bad_tokens(app_server, method, path, auth):
    headers = {"Authorization": auth} if auth else {}
    response = httpx.request(method, f"{app_server.url}{path}", headers=headers, json={"prompt": "x", "useful": 1})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_dev_login_is_off_unless_enabled(start_app):
    server = start_app(dev_auth=False)
    response = httpx.post(f"{server.url}/v1/auth/dev", json={"userId": "x"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": ["a"]}, "prompt"),
        ({"prompt": "x", "conversationId": "bad id!"}, "conversationId"),
        ({"prompt": "x", "requestId": "has space"}, "requestId"),
        ({"prompt": "x", "terminal": "t" * 100}, "terminal"),
        ({"prompt": "x" * 8001}, "prompt"),
        ([1, 2], "body"),
    ],
)
def test_bad_chat_bodies_are_422_with_the_field_named(app_server, token, api, body, field):
    response = httpx.post(f"{app_server.url}/v1/chat/stream", json=body,
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["code"] == "invalid_request"
    assert payload["field"] == field
    assert api.get("/v1/conversations").json()["items"] == []


def test_malformed_json_is_422_not_500(app_server, token):
    response = httpx.post(f"{app_server.url}/v1/chat/stream", content=b'{"prompt": "x",',
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("useful", [5, "yes", None, 0.5])
def test_bad_feedback_is_422(app_server, token, api, useful):
    meta = _ask(app_server, token)
    response = api.put(f"/v1/messages/{meta['messageId']}/feedback", json={"useful": useful})
    assert response.status_code == 422 and response.json()["field"] == "useful"


def test_bad_cursor_is_422(api):
    response = api.get("/v1/conversations", params={"cursor": "not-a-cursor"})
    assert response.status_code == 422 and response.json()["field"] == "cursor"


def test_stop_endpoint_ends_a_running_stream_within_two_seconds(app_server, token, api, mock_llm):
    gate = uuid.uuid4().hex
    marker = f"stop-{gate}"
    body = {"prompt": f"{marker} [mock tokens=50 hold_after=4 gate={gate} interval=0]"}
    events = []
    stopped_at: list[float] = []
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{app_server.url}/v1/chat/stream", json=body,
                      headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        for event in iter_events(response):
            events.append(event)
            if event.event == "message" and len([e for e in events if e.event == "message"]) == 4:
                mid = json.loads(events[0].data)["messageId"]
                stop = api.post(f"/v1/messages/{mid}/stop")
                assert stop.status_code == 202
                stopped_at.append(time.monotonic())
    ended = time.monotonic()
    assert ended - stopped_at[0] < 2.0
    done = [json.loads(e.data) for e in events if e.event == "done"]
    assert done == [{"finishReason": "stopped", "usage": None}]
    assert events[-1].data == "[DONE]"
    turn = api.get(f"/v1/messages/{mid}").json()
    assert turn["status"] == "stopped"
    assert turn["answer"] == answer_text(4)

    def outcome():
        for record in get_json(f"{mock_llm.url}/_mock/requests"):
            if marker in record["body"]["messages"][-1]["content"]:
                return record["outcome"]
    # The upstream request was cancelled (the fake saw its caller hang up), not left running.
    wait_until(lambda: outcome() == "cancelled")


def test_models_lists_the_presets(api):
    body = api.get("/v1/models").json()
    assert "mock" in body["models"] and body["default"] in body["models"]


def test_healthz_needs_no_token(app_server):
    assert httpx.get(f"{app_server.url}/healthz").json() == {"status": "ok"}


def _signed(claims: dict, key: str = TOKEN_SECRET) -> str:
    now = int(time.time())
    return jwt.encode({"iss": "chatrelay", "aud": "chatrelay-client", "iat": now, "exp": now + 300, **claims}, key)


@pytest.mark.parametrize(
    "forge",
    [
        lambda user: _signed({"sub": user, "iat": int(time.time()) - 600, "exp": int(time.time()) - 60}),
        lambda user: _signed({"sub": user, "aud": "some-other-app"}),
        lambda user: _signed({"sub": user, "iss": "someone-else"}),
        lambda user: _signed({"sub": user}, key="k" * 40),
        # A genuine token whose payload was edited to name another user: the signature no longer holds.
        lambda user: _tampered(_signed({"sub": "someone"}), user),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "wrong-key", "tampered"],
)
def test_expired_forged_and_tampered_tokens_are_refused_by_the_server(app_server, user, forge):
    token = login(app_server.url, user)
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{app_server.url}/v1/conversations", headers=headers, timeout=10).status_code == 200
    # The helper signs as the server does, so each forgery below is refused for its one defect.
    genuine = {"Authorization": f"Bearer {_signed({'sub': user})}"}
    assert httpx.get(f"{app_server.url}/v1/conversations", headers=genuine, timeout=10).status_code == 200
    response = httpx.get(f"{app_server.url}/v1/conversations", headers={"Authorization": f"Bearer {forge(user)}"},
                         timeout=10)
    assert response.status_code == 401 and response.json()["code"] == "unauthorized"


def _tampered(token: str, sub: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = sub
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{signature}"


def test_missing_records_and_bad_cursors_answer_the_same_bodies_on_every_route(app_server, start_app, token, api):
    """The store raises typed errors without API field names; the routes name the field where the body had it."""
    unknown = "01KUNKNOWN000000000000000X"
    no_conversation = {"code": "not_found", "message": "conversation not found"}
    no_message = {"code": "not_found", "message": "message not found"}
    for method, path in (("GET", f"/v1/conversations/{unknown}/messages"), ("DELETE", f"/v1/conversations/{unknown}")):
        response = api.request(method, path)
        assert (response.status_code, response.json()) == (404, no_conversation), path
    for method, path, body in (("GET", f"/v1/messages/{unknown}", None), ("POST", f"/v1/messages/{unknown}/stop", None),
                               ("PUT", f"/v1/messages/{unknown}/feedback", {"useful": 1}),
                               ("GET", f"/v1/messages/{unknown}/stream", None)):
        response = api.request(method, path, json=body)
        assert (response.status_code, response.json()) == (404, no_message), path
    # The conversation id came in the body: named, whether the length check (on) or the start write finds it missing.
    for server in (app_server, start_app(max_conversation_turns=0)):
        response = httpx.post(f"{server.url}/v1/chat/stream", json={"prompt": "q", "conversationId": unknown},
                              headers={"Authorization": f"Bearer {token}"})
        assert (response.status_code, response.json()) == (404, {**no_conversation, "field": "conversationId"})
    cid = _ask(app_server, token)["conversationId"]
    _ask(app_server, token)
    conversations_cursor = api.get("/v1/conversations", params={"limit": 1}).json()["nextCursor"]
    bad_cursor = {"code": "invalid_request", "message": "cursor is not valid for this listing", "field": "cursor"}
    for path, cursor in (("/v1/conversations", "not-a-cursor"), (f"/v1/conversations/{cid}/messages", "not-a-cursor"),
                         (f"/v1/conversations/{cid}/messages", conversations_cursor)):
        response = api.get(path, params={"cursor": cursor})
        assert (response.status_code, response.json()) == (422, bad_cursor), (path, cursor)



def _own_partition(api) -> str:
    """The caller's conversations partition, read off a real cursor (clients never see their user id)."""
    for i in range(2):
        stream_chat(str(api.base_url).rstrip("/"), api.headers["Authorization"].split()[1],
                    {"prompt": f"cursor {i} [mock tokens=1]"})
    cursor = api.get("/v1/conversations", params={"limit": 1}).json()["nextCursor"]
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["gsi1pk"]["S"]


@pytest.mark.parametrize("forged", [
    "[" * 5000 + "]" * 5000,  # a parser would recurse
    {"gsi1pk": {"S": "{own}"}, "pk": {"N": "1"}, "sk": {"S": "x"}, "gsi1sk": {"S": "x"}},  # wrong type
    {"gsi1pk": {"S": "{own}"}, "pk": {"S": "x"}, "sk": {"S": "x"}, "gsi1sk": {"S": "x"}, "extra": {"S": "x"}},
    {"gsi1pk": {"S": "{own}"}, "pk": {"ZZ": "x"}, "sk": {"S": "x"}, "gsi1sk": {"S": "x"}},  # unknown type
    {"gsi1pk": {"S": "{own}"}},  # keys missing
])
def test_forged_cursors_are_422_never_5xx(api, forged):
    """Issue 17: a cursor that decoded to deep JSON was a 500, a well-formed invalid key a 503."""
    text = forged if isinstance(forged, str) else json.dumps(forged).replace("{own}", _own_partition(api))
    cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    response = api.get("/v1/conversations", params={"cursor": cursor})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "cursor"
