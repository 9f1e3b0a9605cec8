"""Input limits: body size, JSON nesting, control characters, conversation length.

Each refusal has a clear code, and nothing is stored half-way: every test reads
the API afterwards to prove it.
"""

from __future__ import annotations

import json
import socket
import time
import uuid

import httpx
import pytest

from tests.conftest import login
from tests.support.servers import get_json
from tests.support.sse_client import stream_chat


@pytest.fixture(scope="module")
def small_server(start_app):
    return start_app(max_body_bytes=1024, max_json_depth=8, max_conversation_turns=2)


@pytest.fixture
def small(small_server, user):
    token = login(small_server.url, user)
    with httpx.Client(base_url=small_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        yield api


def _nothing_stored(api: httpx.Client) -> None:
    assert api.get("/v1/conversations").json()["items"] == []


def test_a_declared_oversized_body_is_413(small):
    response = small.post("/v1/chat/stream", json={"prompt": "x" * 2000})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    _nothing_stored(small)


def test_an_oversized_body_without_content_length_is_413(small):
    def chunks():
        yield b'{"prompt": "'
        for _ in range(20):
            yield b"y" * 100
        yield b'"}'

    response = small.post("/v1/chat/stream", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    _nothing_stored(small)


def test_a_chunked_body_within_the_limit_is_read_whole(small):
    def chunks():
        yield b'{"prompt": "chunked '
        yield "问题 [mock tokens=1]".encode()
        yield b'"}'

    with small.stream("POST", "/v1/chat/stream", content=chunks(),
                      headers={"Content-Type": "application/json"}) as response:
        assert response.status_code == 200
        response.read()
    [conversation] = small.get("/v1/conversations").json()["items"]
    assert conversation["title"].startswith("chunked 问题")


def test_other_routes_are_limited_too(small):
    response = small.put("/v1/messages/abc/feedback", content=b'{"useful": 1, "pad": "' + b"p" * 2000 + b'"}',
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_the_openai_route_refuses_in_openais_shape(small_server, small):
    """The limits refuse before routing, in the shape of the route asked for: the OpenAI SDK reads
    the code of an oversized or too deeply nested request as it reads any OpenAI error."""
    import openai

    client = openai.OpenAI(base_url=f"{small_server.url}/v1", api_key=small.headers["Authorization"][7:],
                           max_retries=0)
    with pytest.raises(openai.APIStatusError) as too_large:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x" * 2000}])
    assert too_large.value.status_code == 413 and too_large.value.code == "payload_too_large"
    with pytest.raises(openai.UnprocessableEntityError) as too_deep:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"extra": [[[[[[[[[1]]]]]]]]]})
    assert too_deep.value.code == "invalid_request" and too_deep.value.body["param"] == "body"
    _nothing_stored(small)


def test_deeply_nested_json_is_422(small):
    body = '{"prompt": "x", "extra": ' + "[" * 9 + "]" * 9 + "}"
    response = small.post("/v1/chat/stream", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request" and response.json()["field"] == "body"
    _nothing_stored(small)


def test_pathologically_deep_json_is_422_not_a_crash(api):
    """20,000 levels (40 KB, under the default 64 KB): refused before any parser recurses."""
    body = '{"prompt": "x", "extra": ' + "[" * 20_000 + "]" * 20_000 + "}"
    response = api.post("/v1/chat/stream", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["field"] == "body"
    _nothing_stored(api)


def test_nesting_within_the_limit_is_fine(small):
    with small.stream("POST", "/v1/chat/stream",
                      json={"prompt": "[[[[ brackets in text ]]]] [mock tokens=1]", "extra": [[[1]]]}) as response:
        assert response.status_code == 200
        response.read()


@pytest.mark.parametrize("char", ["\x00", "\x08", "\x1b", "\x7f", "\u0085"])
def test_control_characters_in_the_prompt_are_422(small, char):
    response = small.post("/v1/chat/stream", json={"prompt": f"hello{char}world"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request" and response.json()["field"] == "prompt"
    _nothing_stored(small)


def test_tabs_and_newlines_are_allowed(small):
    with small.stream("POST", "/v1/chat/stream", json={"prompt": "a\tb\r\nc [mock tokens=1]"}) as response:
        assert response.status_code == 200
        response.read()
    assert len(small.get("/v1/conversations").json()["items"]) == 1


def test_a_conversation_stops_at_its_turn_limit(small_server, small, mock_llm):
    token = small.headers["Authorization"][7:]
    first = stream_chat(small_server.url, token, {"prompt": "one [mock tokens=1]"})
    cid = first.meta["conversationId"]
    assert stream_chat(small_server.url, token, {"prompt": "two [mock tokens=1]", "conversationId": cid}).status == 200
    marker = uuid.uuid4().hex
    third = stream_chat(small_server.url, token, {"prompt": f"{marker} [mock tokens=1]", "conversationId": cid})
    assert third.status == 422
    body = json.loads(third.raw)
    assert body["code"] == "conversation_too_long" and body["field"] == "conversationId"
    assert [c["turnCount"] for c in small.get("/v1/conversations").json()["items"]] == [2]
    assert len(small.get(f"/v1/conversations/{cid}/messages").json()["items"]) == 2
    assert not [r for r in get_json(f"{mock_llm.url}/_mock/requests")
                if marker in str(r["body"]["messages"][-1]["content"])]
    # A new conversation is fine.
    assert stream_chat(small_server.url, token, {"prompt": "fresh [mock tokens=1]"}).status == 200


def test_an_unknown_conversation_is_still_404(small):
    response = small.post("/v1/chat/stream", json={"prompt": "x", "conversationId": "nope"})
    assert response.status_code == 404 and response.json()["code"] == "not_found"


# --- a body that never arrives ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def impatient_server(start_app):
    return start_app(body_read_timeout=0.5)


def _raw_request(server, token: str, head_extra: str, body_part: bytes) -> tuple[bytes, float, bool]:
    """Send headers (and ``body_part``) on a raw socket, then nothing: the response, its delay, and
    whether the server closed the connection afterwards."""
    host, port = "127.0.0.1", server.port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall((f"POST /v1/chat/stream HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Type: application/json\r\n{head_extra}\r\n").encode() + body_part)
        started = time.monotonic()
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < _length(received):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        delay = time.monotonic() - started
        sock.settimeout(5)
        try:
            closed = sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            closed = False
    return received, delay, closed


def _length(received: bytes) -> int:
    head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    return next((int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.startswith("content-length:")), 0)


@pytest.mark.parametrize(("head_extra", "body_part"), [
    ("Content-Length: 100\r\n", b""),
    ("Content-Length: 100\r\n", b'{"prompt": "half a bo'),
    ("Transfer-Encoding: chunked\r\n", b'10\r\n{"prompt": "stal\r\n'),
], ids=["nothing", "half", "chunked"])
def test_a_stalled_body_is_408_and_the_connection_closed(impatient_server, user, head_extra, body_part):
    token = login(impatient_server.url, user)
    received, delay, closed = _raw_request(impatient_server, token, head_extra, body_part)
    head, body = received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert json.loads(body) == {"code": "request_timeout",
                                "message": "the request body did not arrive within 0.5 s"}
    assert 0.3 < delay < 5
    assert closed
    with httpx.Client(base_url=impatient_server.url, headers={"Authorization": f"Bearer {token}"}) as api:
        _nothing_stored(api)


def test_a_body_that_arrives_in_time_is_served(impatient_server, user):
    token = login(impatient_server.url, user)

    def slow():
        yield b'{"prompt": "in time '
        time.sleep(0.2)
        yield b'[mock tokens=1]"}'

    with httpx.Client(base_url=impatient_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        with api.stream("POST", "/v1/chat/stream", content=slow(),
                        headers={"Content-Type": "application/json"}) as response:
            assert response.status_code == 200
            response.read()
        assert len(api.get("/v1/conversations").json()["items"]) == 1
