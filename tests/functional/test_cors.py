"""CORS: only origins on the allow-list (``CHATRELAY_CORS_ORIGINS``) get CORS headers."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import login

ALLOWED = "https://chat.example.com"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def cors_server(start_app):
    return start_app(cors_origins=[ALLOWED], rate_limit_per_minute=1)


def _preflight(server, origin: str) -> httpx.Response:
    return httpx.options(f"{server.url}/v1/chat/stream", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,last-event-id"})


def test_a_listed_origin_passes_the_preflight(cors_server):
    response = _preflight(cors_server, ALLOWED)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "last-event-id"} <= {h.strip() for h in allowed_headers.split(",")}
    assert "POST" in response.headers["access-control-allow-methods"]


def test_an_unlisted_origin_gets_no_cors_headers(cors_server, user):
    assert "access-control-allow-origin" not in _preflight(cors_server, EVIL).headers
    token = login(cors_server.url, user)
    response = httpx.get(f"{cors_server.url}/v1/conversations",
                         headers={"Origin": EVIL, "Authorization": f"Bearer {token}"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_listed_origins_can_read_the_stream_and_quota_headers(cors_server, user):
    token = login(cors_server.url, user)
    headers = {"Origin": ALLOWED, "Authorization": f"Bearer {token}"}
    with httpx.stream("POST", f"{cors_server.url}/v1/chat/stream", json={"prompt": "hi [mock tokens=1]"},
                      headers=headers) as response:
        response.read()
    assert response.headers["access-control-allow-origin"] == ALLOWED
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"x-conversation-id", "x-message-id", "retry-after"} <= exposed
    limited = httpx.post(f"{cors_server.url}/v1/chat/stream", json={"prompt": "again"}, headers=headers)
    assert limited.status_code == 429 and limited.headers["access-control-allow-origin"] == ALLOWED


def test_without_an_allow_list_there_are_no_cors_headers(app_server):
    response = httpx.get(f"{app_server.url}/healthz", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in _preflight(app_server, ALLOWED).headers
