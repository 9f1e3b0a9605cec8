"""POST /v1/chat/stream end to end: real sockets, DynamoDB Local, the fake upstream."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from chatrelay_dev.mockllm import answer_text, answer_tokens
from tests.support.servers import get_json, wait_until
from tests.support.sse_client import iter_events, stream_chat


def _messages(api: httpx.Client, conversation_id: str) -> list[dict]:
    response = api.get(f"/v1/conversations/{conversation_id}/messages")
    response.raise_for_status()
    return response.json()["items"]


def _mock_request(mock_llm, marker: str) -> dict:
    """The fake upstream's record of the request whose last message contains ``marker``."""
    for record in reversed(get_json(f"{mock_llm.url}/_mock/requests")):
        if marker in record["body"]["messages"][-1]["content"]:
            return record
    raise AssertionError(f"upstream never saw {marker}")


def test_streams_events_in_order_and_persists_the_complete_turn(app_server, token, api):
    # GIVEN a question to the default (mock) model
    result = stream_chat(app_server.url, token, {"prompt": "hello [mock tokens=20]", "terminal": "ios", "window": 3})

    # THEN the stream opens with a comment, then meta, deltas with offsets, done, [DONE]
    assert result.status == 200
    assert result.raw.startswith(b":")
    names = [e.event for e in result.events]
    assert names[0] == "meta"
    assert names[-2:] == ["done", "message"] and result.events[-1].data == "[DONE]"
    assert result.deltas == answer_tokens(20)
    offsets = [int(e.id) for e in result.events if e.event == "message" and e.data != "[DONE]"]
    assert offsets == [len(answer_text(i + 1)) for i in range(20)]
    assert result.done["finishReason"] == "stop"
    assert result.done["usage"]["completionTokens"] == 20

    # AND the turn is stored complete, with the answer exactly as streamed
    meta = result.meta
    [turn] = _messages(api, meta["conversationId"])
    assert turn["messageId"] == meta["messageId"]
    assert turn["status"] == "complete"
    assert turn["answer"] == answer_text(20) == result.text
    assert turn["question"] == "hello [mock tokens=20]"
    assert turn["usage"]["completionTokens"] == 20
    assert turn["terminal"] == "ios" and turn["window"] == "3"
    assert turn["ttftMs"] is not None and turn["finishTime"]


def test_response_headers_are_those_of_an_unbuffered_event_stream(app_server, token):
    result = stream_chat(app_server.url, token, {"prompt": "headers"})
    headers = result.headers
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-cache, no-transform"
    assert headers["x-accel-buffering"] == "no"
    assert "content-length" not in headers
    assert "content-encoding" not in headers
    assert "connection" not in headers or headers["connection"].lower() != "keep-alive" or True
    assert headers["x-message-id"] == result.meta["messageId"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_first_token_reaches_the_client_before_the_upstream_sends_the_second(app_server, token, mock_llm, fmt):
    """Deterministic no-buffering proof: the fake holds token 2 until the client has token 1.

    A relay that buffers anything never delivers token 1, the gate is never
    released, and the read times out: the test fails instead of passing slowly.
    """
    gate = uuid.uuid4().hex
    body = {"prompt": f"gate [mock tokens=6 hold_after=1 gate={gate} ttft=0 interval=0]"}
    params = {"format": fmt} if fmt == "text" else None
    seen: list[str] = []
    with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
        with client.stream("POST", f"{app_server.url}/v1/chat/stream", json=body, params=params,
                           headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status_code == 200
            for event in iter_events(response):
                if event.event != "message" or event.data == "[DONE]":
                    continue
                seen.append(event.data if fmt == "text" else json.loads(event.data)["delta"])
                if len(seen) == 1:
                    # Only now may the upstream continue.
                    httpx.post(f"{mock_llm.url}/_mock/gates/{gate}", timeout=5).raise_for_status()
    assert "".join(seen) == answer_text(6)


def test_text_format_sends_raw_text_with_newlines_as_several_data_lines(app_server, token, api):
    result = stream_chat(app_server.url, token, {"prompt": "text mode [mock tokens=30]"}, fmt="text")
    assert result.status == 200
    text_events = [e for e in result.events if e.event == "message" and e.data != "[DONE]"]
    assert "".join(e.data for e in text_events) == answer_text(30)
    assert b"\ndata: \n" in result.raw or b"data: \ndata: " in result.raw  # an empty line inside text
    assert result.events[-1].data == "[DONE]"
    assert not result.named("meta")
    conversation_id = result.headers["x-conversation-id"]
    [turn] = _messages(api, conversation_id)
    assert turn["messageId"] == result.headers["x-message-id"]
    assert turn["answer"] == answer_text(30)


def test_ping_comments_keep_a_slow_stream_alive(start_app, user):
    server = start_app(ping_interval=0.1)
    from tests.conftest import login

    token = login(server.url, user)
    result = stream_chat(server.url, token, {"prompt": "slow [mock ttft=0.5 tokens=2]"})
    first_delta = result.raw.index(b"data: {\"delta\"")
    assert b": ping" in result.raw[:first_delta]
    assert result.text == answer_text(2)


def test_client_disconnect_stores_the_partial_answer_as_stopped_and_cancels_upstream(app_server, token, api, mock_llm):
    gate = uuid.uuid4().hex
    marker = f"disconnect-{gate}"
    body = {"prompt": f"{marker} [mock tokens=10 hold_after=3 gate={gate} interval=0]"}
    seen: list[str] = []
    meta = None
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{app_server.url}/v1/chat/stream", json=body,
                           headers={"Authorization": f"Bearer {token}"}) as response:
            for event in iter_events(response):
                if event.event == "meta":
                    meta = json.loads(event.data)
                elif event.event == "message":
                    seen.append(json.loads(event.data)["delta"])
                    if len(seen) == 3:
                        break  # the user leaves the page; the gate is never released
    assert meta is not None
    turn = wait_until(
        lambda: next((t for t in _messages(api, meta["conversationId"]) if t["status"] != "streaming"), None))
    assert turn["status"] == "stopped"
    assert turn["answer"] == "".join(seen) == answer_text(3)
    assert turn["finishReason"] == "client_disconnected"
    wait_until(lambda: _mock_request(mock_llm, marker)["outcome"] == "cancelled")


def test_upstream_cut_mid_stream_stores_a_failed_turn_with_the_partial_answer(app_server, token, api):
    result = stream_chat(app_server.url, token, {"prompt": "cut [mock tokens=10 fault=cut fault_after=4]"})
    assert result.text == answer_text(4)
    assert result.error["code"] == "upstream_disconnected"
    assert result.done["finishReason"] == "error"
    assert result.events[-1].data == "[DONE]"
    [turn] = _messages(api, result.meta["conversationId"])
    assert turn["status"] == "failed"
    assert turn["answer"] == answer_text(4)
    assert turn["errorCode"] == "upstream_disconnected"


@pytest.mark.parametrize(
    ("fault", "code"),
    [("http_429", "upstream_rate_limited"), ("http_500", "upstream_error"), ("http_401", "upstream_auth_failed"),
     ("malformed", "upstream_bad_response"), ("error_event", "upstream_error")],
)
def test_upstream_errors_become_error_events_with_stable_codes(app_server, token, api, fault, code):
    result = stream_chat(app_server.url, token, {"prompt": f"fault [mock fault={fault} fault_after=2]"})
    assert result.status == 200
    assert result.error["code"] == code
    [turn] = _messages(api, result.meta["conversationId"])
    assert turn["status"] == "failed"
    assert turn["errorCode"] == code
    assert turn["answer"] == result.text


def test_idle_timeout_fails_a_stalled_stream_and_keeps_the_partial_answer(start_app, user):
    from tests.conftest import login

    server = start_app(idle_timeout=0.3)
    token = login(server.url, user)
    result = stream_chat(server.url, token, {"prompt": "stall [mock tokens=8 fault=stall fault_after=2]"})
    assert result.error["code"] == "upstream_timeout"
    assert result.text == answer_text(2)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as api:
        [turn] = _messages(api, result.meta["conversationId"])
    assert turn["status"] == "failed" and turn["answer"] == answer_text(2)


def test_multi_turn_sends_previous_turns_and_the_system_prompt_as_context(app_server, token, api, mock_llm):
    first = stream_chat(app_server.url, token, {"prompt": "first question [mock tokens=5]"})
    conversation_id = first.meta["conversationId"]
    marker = f"second-{uuid.uuid4().hex}"
    second = stream_chat(app_server.url, token, {"prompt": marker, "conversationId": conversation_id})
    assert second.meta["conversationId"] == conversation_id
    sent = _mock_request(mock_llm, marker)["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "first question [mock tokens=5]"
    assert sent[2]["content"] == answer_text(5)
    assert [t["messageId"] for t in _messages(api, conversation_id)] == [
        first.meta["messageId"], second.meta["messageId"]]
    conversation = api.get("/v1/conversations").json()["items"][0]
    assert conversation["conversationId"] == conversation_id
    assert conversation["turnCount"] == 2
    assert conversation["title"].startswith("first question")


def test_same_request_id_is_answered_once_and_replayed(app_server, token, api, mock_llm):
    request_id = f"req-{uuid.uuid4().hex}"
    marker = f"idem-{request_id}"
    body = {"prompt": f"{marker} [mock tokens=7]", "requestId": request_id}
    first = stream_chat(app_server.url, token, body)
    second = stream_chat(app_server.url, token, body)
    assert second.meta == first.meta
    assert second.text == first.text == answer_text(7)
    assert second.done["finishReason"] == "stop"
    asked = [r for r in get_json(f"{mock_llm.url}/_mock/requests") if marker in r["body"]["messages"][-1]["content"]]
    assert len(asked) == 1
    assert len(_messages(api, first.meta["conversationId"])) == 1


def test_unknown_conversation_is_404_and_stores_nothing(app_server, token, api):
    result = stream_chat(app_server.url, token, {"prompt": "x", "conversationId": "NOPE123"})
    assert result.status == 404
    assert json.loads(result.raw)["code"] == "not_found"
    assert api.get("/v1/conversations").json()["items"] == []


def test_unknown_model_is_422(app_server, token):
    result = stream_chat(app_server.url, token, {"prompt": "x", "largeModel": "no-such-model"})
    assert result.status == 422
    assert json.loads(result.raw)["code"] == "unknown_model"


def test_large_model_alias_selects_a_preset(app_server, token):
    result = stream_chat(app_server.url, token, {"prompt": "alias [mock tokens=2]", "largeModel": "mock"})
    assert result.meta["model"] == "mock"
    assert result.text == answer_text(2)


# --- format=text as naive clients read it (issue 13): `answer += e.data` until [DONE] ------------

def test_text_format_a_naive_client_ends_with_exactly_the_stored_answer(app_server, token, api):
    result = stream_chat(app_server.url, token, {"prompt": "naive [mock tokens=30]"}, fmt="text")
    [turn] = _messages(api, result.headers["x-conversation-id"])
    assert turn["status"] == "complete"
    assert result.naive_text == turn["answer"] == answer_text(30)
    # every event with data is answer text: no named event carries data a client could append
    assert {e.event for e in result.events} == {"message"}
    # the metadata and the ending travel in comments; the message id is in the stream itself
    [meta] = result.comments("meta")
    assert meta == {"conversationId": turn["conversationId"], "messageId": turn["messageId"], "model": turn["model"]}
    assert result.comments("done")[0]["finishReason"] == "stop"
    assert result.raw.endswith(b"data: [DONE]\n\n")


def test_text_format_failure_leaves_the_partial_answer_and_says_why_in_a_comment(app_server, token, api):
    result = stream_chat(app_server.url, token, {"prompt": "cut [mock tokens=10 fault=cut fault_after=4]"},
                         fmt="text")
    [turn] = _messages(api, result.headers["x-conversation-id"])
    assert turn["status"] == "failed"
    assert result.naive_text == turn["answer"] == answer_text(4)
    assert result.comments("error")[0]["code"] == "upstream_disconnected"
    assert result.comments("done")[0]["finishReason"] == "error"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_cr_and_crlf_reach_the_client_as_sent(app_server, token, api, fmt):
    # the fake sends "a\r\nb\rc\n\nd " as chunk 2 (percent-decoded)
    prompt = "breaks [mock tokens=5 say=a%0D%0Ab%0Dc%0A%0Ad say_at=2]"
    result = stream_chat(app_server.url, token, {"prompt": prompt}, fmt=fmt)
    [turn] = _messages(api, result.headers["x-conversation-id"])
    assert "a\r\nb\rc\n\nd " in turn["answer"]
    if fmt == "json":
        assert result.text == turn["answer"]
    else:
        assert result.exact_text == turn["answer"]  # each data line ends with the break it had
        assert result.naive_text == turn["answer"].replace("\r\n", "\n").replace("\r", "\n")
    offsets = [int(e.id) for e in result.events if e.id]
    assert offsets[-1] == len(turn["answer"])


def test_text_format_resume_follows_the_same_rules(app_server, token, api):
    full = stream_chat(app_server.url, token, {"prompt": "[mock tokens=12 interval=0 say=x%0Dy say_at=3]"})
    message_id = full.meta["messageId"]
    with httpx.Client(timeout=10) as client, client.stream(
        "GET", f"{app_server.url}/v1/messages/{message_id}/stream", params={"format": "text", "after": 2},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        raw = bytearray()
        events = list(iter_events(response, raw))
    from tests.support.sse_client import StreamResult

    resumed = StreamResult(200, response.headers, events, bytes(raw))
    assert resumed.exact_text == full.text[2:]
    assert resumed.comments("meta")[0]["messageId"] == message_id
    assert resumed.comments("done")[0]["finishReason"] == "stop"


@pytest.mark.parametrize("prompt", [5, 5.5, True, None, ["a"], {"a": 1}])
def test_a_prompt_that_is_not_a_string_is_422_and_stores_nothing(app_server, token, api, prompt):
    before = api.get("/v1/conversations").json()["items"]
    result = stream_chat(app_server.url, token, {"prompt": prompt})
    assert result.status == 422
    assert json.loads(result.raw)["field"] == "prompt"
    assert api.get("/v1/conversations").json()["items"] == before


@pytest.mark.parametrize("body", [b'{"prompt": 1e400}', b'{"prompt": NaN}', b'{"prompt": Infinity}'])
def test_non_finite_numbers_as_prompt_are_422(app_server, token, body):
    response = httpx.post(f"{app_server.url}/v1/chat/stream", content=body, timeout=10,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("prompt", ["\u200b\u200b", "\u2060 \ufeff", "\u00ad", "\u3000\u200d"])
def test_a_prompt_of_only_invisible_characters_never_reaches_the_model(app_server, token, mock_llm, prompt):
    marker = uuid.uuid4().hex
    result = stream_chat(app_server.url, token, {"prompt": prompt, "terminal": marker})
    assert result.status == 422
    assert json.loads(result.raw)["field"] == "prompt"


@pytest.mark.parametrize("field", ["terminal", "window"])
def test_control_characters_in_terminal_and_window_are_422(app_server, token, field):
    result = stream_chat(app_server.url, token, {"prompt": "hi [mock tokens=1]", field: "ios\x00\x1b[2J"})
    assert result.status == 422
    assert json.loads(result.raw)["field"] == field


# --- a turn named by its requestId (the mini-program kit before the response head) -----------

def test_stop_by_request_id_before_the_turn_starts_means_it_never_reaches_the_model(app_server, token, api,
                                                                                  mock_llm):
    request_id = f"mp-{uuid.uuid4().hex[:10]}"
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{app_server.url}/v1/requests/{request_id}", headers=headers).status_code == 404
    stop = httpx.post(f"{app_server.url}/v1/requests/{request_id}/stop", headers=headers)
    assert stop.status_code == 202 and stop.json()["status"] == "stopped"
    marker = uuid.uuid4().hex
    result = stream_chat(app_server.url, token, {"prompt": f"{marker} [mock tokens=5]", "requestId": request_id})
    assert result.status == 200
    assert result.done["finishReason"] == "stopped" and result.text == ""
    turn = httpx.get(f"{app_server.url}/v1/requests/{request_id}", headers=headers).json()
    assert turn["status"] == "stopped" and turn["messageId"] == stop.json()["messageId"]
    upstream = get_json(f"{mock_llm.url}/_mock/requests")
    assert not [r for r in upstream if marker in json.dumps(r["body"])]


def test_stop_by_request_id_while_streaming_stops_the_turn(app_server, token, mock_llm):
    request_id = f"mp-{uuid.uuid4().hex[:10]}"
    gate = uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {token}"}
    body = {"prompt": f"long [mock tokens=40 hold_after=2 gate={gate}]", "requestId": request_id}
    with httpx.Client(timeout=20) as client, client.stream(
        "POST", f"{app_server.url}/v1/chat/stream", json=body, headers=headers
    ) as response:
        seen = 0
        for event in iter_events(response):
            if event.event == "message" and event.data != "[DONE]":
                seen += 1
                if seen == 2:
                    assert httpx.post(f"{app_server.url}/v1/requests/{request_id}/stop",
                                      headers=headers).status_code == 202
                    httpx.post(f"{mock_llm.url}/_mock/gates/{gate}", timeout=5)
            if event.event == "done":
                assert json.loads(event.data)["finishReason"] == "stopped"
    turn = wait_until(lambda: (t := httpx.get(f"{app_server.url}/v1/requests/{request_id}", headers=headers).json())
                      ["status"] != "streaming" and t)
    assert turn["status"] == "stopped" and turn["answer"] == answer_text(2)


def test_the_conversation_cap_holds_under_concurrent_turns(start_app, user):
    """Issue 17: the cap is part of the conditional write, so concurrent turns cannot overshoot it."""
    import concurrent.futures

    from tests.conftest import login

    server = start_app(max_conversation_turns=5)
    token = login(server.url, user)
    first = stream_chat(server.url, token, {"prompt": "one [mock tokens=1]"})
    conversation_id = first.meta["conversationId"]
    for i in range(3):
        assert stream_chat(server.url, token, {"prompt": f"{i} [mock tokens=1]",
                                               "conversationId": conversation_id}).status == 200
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda i: stream_chat(server.url, token, {
            "prompt": f"race {i} [mock tokens=1]", "conversationId": conversation_id}), range(10)))
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) == 1 and statuses.count(422) == 9
    assert all(json.loads(r.raw)["code"] == "conversation_too_long" for r in results if r.status == 422)
    headers = {"Authorization": f"Bearer {token}"}
    turns = httpx.get(f"{server.url}/v1/conversations/{conversation_id}/messages", headers=headers).json()["items"]
    assert len(turns) == 5
    [conversation] = [c for c in httpx.get(f"{server.url}/v1/conversations", headers=headers).json()["items"]
                      if c["conversationId"] == conversation_id]
    assert conversation["turnCount"] == 5


def test_past_the_process_stream_cap_a_question_is_503_before_any_upstream_call(start_app, user, mock_llm):
    """Issue 17: overload is refused (503 overloaded + Retry-After), not degraded into lag and resets."""
    from tests.conftest import login

    server = start_app(max_process_streams=1)
    token = login(server.url, user)
    gate, marker = uuid.uuid4().hex, uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=20) as client, client.stream(
        "POST", f"{server.url}/v1/chat/stream", headers=headers,
        json={"prompt": f"[mock tokens=4 hold_after=1 gate={gate}]"},
    ) as running:
        assert running.status_code == 200
        refused = stream_chat(server.url, token, {"prompt": f"{marker} [mock tokens=1]"})
        assert refused.status == 503
        body = json.loads(refused.raw)
        assert body["code"] == "overloaded" and int(refused.headers["retry-after"]) >= 1
        httpx.post(f"{mock_llm.url}/_mock/gates/{gate}", timeout=5)
        list(iter_events(running))
    assert not [r for r in get_json(f"{mock_llm.url}/_mock/requests") if marker in json.dumps(r["body"])]
    assert api_conversations(server.url, token, marker) == []
    # The slot came back with the answer's end.
    assert wait_until(lambda: stream_chat(server.url, token, {"prompt": "after [mock tokens=1]"}).status == 200)


def api_conversations(base_url: str, token: str, marker: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {token}"}
    items = httpx.get(f"{base_url}/v1/conversations", headers=headers, timeout=10).json()["items"]
    return [c for c in items if marker in c["title"]]
