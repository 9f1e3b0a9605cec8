"""The stream routes' fast parsers (api/fast_route.py) against FastAPI's own handler.

Each request goes to the app twice: as is (the fast parser answers the plain case) and with a
dependency override registered, which sends every request to FastAPI's handler. Both must end
the same way: the same response, and, when the request reached the endpoint, the same turn
request and options. The plain requests must take the fast path (no dependency solving).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import fastapi.routing
import httpx
import pytest
from starlette.requests import Request

from chatrelay import errors
from chatrelay.api import routes_chat
from chatrelay.api.app import create_app
from chatrelay.settings import Settings
from chatrelay.turns import TurnStream


class _Captured(errors.RequestError):
    code = "captured"
    status_code = 418


@dataclass
class _Turns:
    calls: list[tuple] = field(default_factory=list)

    async def start(self, user_id, request, *, deadline=None):
        self.calls.append((user_id, request, deadline))
        raise _Captured("reached the turn service")

    async def started(self, user_id, request, *, deadline=None):
        self.calls.append((user_id, request, deadline))
        return TurnStream("c", "m", "default", _no_events())


async def _no_events():
    return
    yield


@pytest.fixture(scope="module")
def app():
    settings = Settings(token_secret="t" * 40, serve_h5=False, dynamodb_endpoint_url="http://127.0.0.1:9")
    app = create_app(settings)
    app.state.services.__dict__["turns"] = _Turns()
    return app


@pytest.fixture
def solved(monkeypatch) -> list[int]:
    """Calls into FastAPI's handler (its slow path): its JSON parse, its dependency solving."""
    calls: list[int] = []
    solve, parse = fastapi.routing.solve_dependencies, Request.json

    async def counting_solve(*args, **kwargs):
        calls.append(1)
        return await solve(*args, **kwargs)

    async def counting_parse(self):
        calls.append(1)
        return await parse(self)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting_solve)
    monkeypatch.setattr(Request, "json", counting_parse)
    return calls


async def _request(app, method: str, url: str, headers: dict, content: bytes | None, *, slow: bool):
    turns: _Turns = app.state.services.turns
    turns.calls.clear()
    if slow:
        app.dependency_overrides[_token] = _token  # any override: FastAPI resolves every request
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # 500s answered
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.request(method, url, headers=headers, content=content)
    finally:
        app.dependency_overrides.clear()
    return response.status_code, response.json(), [(u, r) for u, r, _ in turns.calls]


def _send(app, method: str, url: str, headers, content: bytes | None, *, slow: bool):
    return asyncio.run(_request(app, method, url, headers, content, slow=slow))


def _token(app, user: str = "fast-user") -> str:
    return app.state.services.tokens.issue(user)


JSON = "application/json"
BODY = json.dumps({"prompt": "hello"}).encode()
# (query, content type, body, authorization or None for a valid token); plain: takes the fast path.
STREAM_CASES = [
    ("", JSON, BODY, None, True),
    ("?format=text", JSON, BODY, None, True),
    ("?format=text&newlines=marker", JSON, BODY, None, True),
    ("?unknown=1", JSON, BODY, None, True),
    ("", "application/json; charset=utf-8", BODY, None, True),
    ("", "Application/JSON", BODY, None, True),
    ("", JSON, json.dumps({"prompt": "hi", "conversationId": "c1", "largeModel": "default", "requestId": "r-1",
                           "userCode": "u", "terminal": 3, "window": "w", "userId": "ignored"}).encode(), None, True),
    ("?format=xml", JSON, BODY, None, False),
    ("?format=text&format=json", JSON, BODY, None, False),
    ("?newlines=", JSON, BODY, None, False),
    ("", JSON, BODY, "", False),
    ("", JSON, BODY, "Bearer", False),
    ("", JSON, BODY, "Basic abc", False),
    ("", JSON, BODY, "Bearer not-a-token", False),
    ("", "text/plain", BODY, None, False),
    ("", None, BODY, None, False),
    ("", "application/vnd.api+json", BODY, None, False),
    ("", JSON, b"", None, False),
    ("", JSON, b"{not json", None, False),
    ("", JSON, b"[1, 2]", None, False),
    ("", JSON, b'{"prompt": NaN}', None, False),
    ("", JSON, b'{"prompt": ""}', None, False),
    ("", JSON, b'{"prompt": 5}', None, False),
    ("", JSON, b'{"prompt": "x", "conversationId": "bad id"}', None, False),
    ("", JSON, b'{"prompt": "x", "terminal": "a\\u0001"}', None, False),
    ("", JSON, "{\"prompt\": \"caf\u00e9\"}".encode("utf-16"), None, True),  # json.loads reads UTF-16 too
]


@pytest.mark.parametrize(("query", "content_type", "body", "authorization", "plain"), STREAM_CASES)
def test_chat_stream_fast_path_ends_as_fastapi_would(app, solved, monkeypatch, query, content_type, body,
                                                     authorization, plain):
    def response(stream, fmt, services, newlines="lines"):  # the options, in the error's message
        raise _Captured(f"format={fmt} newlines={newlines}")

    monkeypatch.setattr(routes_chat, "_response", response)
    monkeypatch.setattr(_Turns, "start", _Turns.started)
    headers = {"Authorization": f"Bearer {_token(app)}" if authorization is None else authorization}
    if content_type is not None:
        headers["Content-Type"] = content_type
    fast = _send(app, "POST", "/v1/chat/stream" + query, headers, body, slow=False)
    assert bool(solved) is not plain
    solved.clear()
    slow = _send(app, "POST", "/v1/chat/stream" + query, headers, body, slow=True)
    assert solved
    assert fast == slow


COMPLETION = json.dumps({"model": None, "stream": True, "messages": [{"role": "user", "content": "hello"}]}).encode()
COMPLETION_CASES = [
    ({}, COMPLETION, True),
    ({"X-Conversation-Id": "conv-1"}, COMPLETION, True),
    ({"X-Conversation-Id": ""}, COMPLETION, True),
    ({}, json.dumps({"messages": [{"role": "system", "content": "be brief"},
                                  {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                     "metadata": {"conversation_id": "c2"}, "temperature": 0.3}).encode(), True),
    ({"X-Conversation-Id": "bad id"}, COMPLETION, True),  # refused by the endpoint itself, on either path
    ({}, json.dumps({"messages": []}).encode(), False),
    ({}, json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(), False),
    ({"Authorization": "Bearer nope"}, COMPLETION, False),
]


@pytest.mark.parametrize(("headers", "body", "plain"), COMPLETION_CASES)
def test_chat_completions_fast_path_ends_as_fastapi_would(app, solved, headers, body, plain):
    headers = {"Authorization": f"Bearer {_token(app)}", "Content-Type": JSON, **headers}
    fast = _send(app, "POST", "/v1/chat/completions", headers, body, slow=False)
    assert bool(solved) is not plain
    solved.clear()
    slow = _send(app, "POST", "/v1/chat/completions", headers, body, slow=True)
    assert fast == slow


def test_a_repeated_header_is_left_to_fastapi(app, solved):
    token = _token(app)
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}"), ("Content-Type", JSON)]
    fast = _send(app, "POST", "/v1/chat/stream", httpx.Headers(headers), BODY, slow=False)
    assert solved
    assert fast[0] == _Captured.status_code


def test_once_routed_a_plain_request_skips_fastapis_router(app, monkeypatch):
    handled: list[int] = []
    handle = fastapi.routing.APIRoute.handle

    async def counting(self, scope, receive, send):
        handled.append(1)
        return await handle(self, scope, receive, send)

    monkeypatch.setattr(fastapi.routing.APIRoute, "handle", counting)
    headers = {"Authorization": f"Bearer {_token(app)}", "Content-Type": JSON}
    for path in ("/v1/chat/stream", "/v1/chat/completions"):
        body = BODY if path == "/v1/chat/stream" else COMPLETION
        _send(app, "POST", path, headers, body, slow=False)  # routed by FastAPI (or already learned)
        handled.clear()
        assert _send(app, "POST", path, headers, body, slow=False)[0] == _Captured.status_code
        assert not handled
        _send(app, "POST", path, headers, body, slow=True)
        assert handled  # with dependency overrides, FastAPI routes it


def test_an_unexpected_error_is_a_500_on_both_paths(app, monkeypatch):
    async def broken(self, user_id, request, *, deadline=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(_Turns, "start", broken)
    headers = {"Authorization": f"Bearer {_token(app)}", "Content-Type": JSON}
    _send(app, "POST", "/v1/chat/stream", headers, BODY, slow=False)  # routed once
    fast = _send(app, "POST", "/v1/chat/stream", headers, BODY, slow=False)
    slow = _send(app, "POST", "/v1/chat/stream", headers, BODY, slow=True)
    assert fast == slow
    assert fast[0] == 500 and fast[1]["code"] == "internal_error"
