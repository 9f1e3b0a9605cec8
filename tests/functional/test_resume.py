"""Nothing lost: resume after a drop, endings under pressure, storage faults."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from chatrelay.store.dynamodb import DynamoDBChatStore
from chatrelay.store.records import Turn, utc_now
from chatrelay.store.table import Table
from chatrelay_dev.local import dynamodb_local
from chatrelay_dev.local.table import ensure_table
from chatrelay_dev.mockllm import answer_text
from tests.conftest import TABLE, login
from tests.support.servers import wait_until
from tests.support.sse_client import StreamResult, iter_events, stream_chat


@pytest.fixture(scope="module")
def resumable(start_app):
    """A server that keeps generating after a client drops, checkpointing fast."""
    return start_app(finish_on_disconnect=True, checkpoint_interval=0.1, resume_poll_interval=0.05)


def _drop_after(server, token, body, k: int) -> tuple[dict, list[str], str]:
    """Read ``k`` deltas, then drop the connection. Returns meta, the deltas and the last id."""
    deltas, last_id, meta = [], None, None
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{server.url}/v1/chat/stream", json=body,
                      headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        for event in iter_events(response):
            if event.event == "meta":
                meta = json.loads(event.data)
            elif event.event == "message":
                deltas.append(json.loads(event.data)["delta"])
                last_id = event.id
                if len(deltas) == k:
                    break
    return meta, deltas, last_id


def _resume(server, token, message_id, *, last_event_id: str | bytes | None = None, after=None,
            fmt="json") -> StreamResult:
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    params = {}
    if after is not None:
        params["after"] = after
    if fmt != "json":
        params["format"] = fmt
    with (
        httpx.Client(timeout=15) as client,
        client.stream("GET", f"{server.url}/v1/messages/{message_id}/stream", headers=headers,
                      params=params) as response,
    ):
        raw = bytearray()
        if response.status_code != 200:
            response.read()
            return StreamResult(response.status_code, response.headers, [], response.content)
        return StreamResult(200, response.headers, list(iter_events(response, raw)), bytes(raw))


def _stored(server, token, message_id) -> dict:
    return httpx.get(f"{server.url}/v1/messages/{message_id}", headers={"Authorization": f"Bearer {token}"}).json()


def test_resume_a_finished_turn_from_the_last_event_id(resumable, user):
    token = login(resumable.url, user)
    meta, seen, last_id = _drop_after(resumable, token, {"prompt": "[mock tokens=30 interval=0]"}, k=7)
    turn = wait_until(lambda: (t := _stored(resumable, token, meta["messageId"]))["status"] == "complete" and t)
    resumed = _resume(resumable, token, meta["messageId"], last_event_id=last_id)
    assert resumed.meta == meta
    assert "".join(seen) + resumed.text == turn["answer"] == answer_text(30)
    assert resumed.done["finishReason"] == "stop"
    assert resumed.events[-1].data == "[DONE]"


def test_resume_a_turn_that_is_still_streaming_follows_it_to_the_end(resumable, user):
    token = login(resumable.url, user)
    body = {"prompt": "[mock tokens=40 interval=0.03]"}
    meta, seen, last_id = _drop_after(resumable, token, body, k=5)
    assert _stored(resumable, token, meta["messageId"])["status"] == "streaming"
    resumed = _resume(resumable, token, meta["messageId"], last_event_id=last_id)
    turn = _stored(resumable, token, meta["messageId"])
    assert turn["status"] == "complete"
    assert "".join(seen) + resumed.text == turn["answer"] == answer_text(40)
    # It followed checkpoints: the rest came in more than one piece.
    assert len(resumed.deltas) > 1
    offsets = [int(e.id) for e in resumed.events if e.event == "message" and e.data != "[DONE]"]
    assert offsets == sorted(offsets) and offsets[-1] == len(answer_text(40))


def test_resume_with_after_in_text_format(resumable, user):
    token = login(resumable.url, user)
    full = stream_chat(resumable.url, token, {"prompt": "[mock tokens=12 interval=0]"})
    resumed = _resume(resumable, token, full.meta["messageId"], after=5, fmt="text")
    text = "".join(e.data for e in resumed.events if e.event == "message" and e.data != "[DONE]")
    assert text == full.text[5:]


def test_resume_is_scoped_to_the_owner_and_validates_the_offset(resumable, user):
    token = login(resumable.url, user)
    full = stream_chat(resumable.url, token, {"prompt": "[mock tokens=3 interval=0]"})
    other = login(resumable.url, "other-" + uuid.uuid4().hex[:8])
    assert _resume(resumable, other, full.meta["messageId"]).status == 404
    assert _resume(resumable, token, full.meta["messageId"], last_event_id="abc").status == 422


def test_a_retried_request_id_follows_the_first_attempt_while_it_streams(resumable, user):
    token = login(resumable.url, user)
    body = {"prompt": "[mock tokens=30 interval=0.03]", "requestId": uuid.uuid4().hex}
    meta, _, _ = _drop_after(resumable, token, body, k=2)
    retry = stream_chat(resumable.url, token, body)
    assert retry.meta == meta
    assert retry.text == answer_text(30)
    assert retry.done["finishReason"] == "stop"


def test_a_turn_near_the_lambda_deadline_ends_truncated(start_app, user):
    server = start_app(lambda_deadline_margin=0.5, trust_lambda_context=True)  # as behind LWA
    token = login(server.url, user)
    context = json.dumps({"request_id": "r1", "deadline": int((time.time() + 1.0) * 1000)})
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", f"{server.url}/v1/chat/stream",
                      json={"prompt": "[mock tokens=200 interval=0.02]"},
                      headers={"Authorization": f"Bearer {token}", "x-amzn-lambda-context": context}) as r,
    ):
        events = list(iter_events(r))
    result = StreamResult(200, r.headers, events)
    assert result.done["finishReason"] == "lambda_timeout"
    turn = _stored(server, token, result.meta["messageId"])
    assert turn["status"] == "truncated"
    assert turn["answer"] == result.text and 0 < len(result.text) < len(answer_text(200))


def test_a_turn_left_streaming_by_a_crashed_instance_is_failed_when_read(start_app, dynamodb, user):
    import anyio

    server = start_app(stale_after=2.0)
    token = login(server.url, user)
    store = DynamoDBChatStore(Table(TABLE, client=dynamodb_local.local_client(dynamodb.endpoint)))
    turn = Turn("CRASHED" + uuid.uuid4().hex[:10], "CONV" + uuid.uuid4().hex[:10], "q", "mock", utc_now())
    anyio.run(store.start_turn, user, None, turn)  # the instance dies right after this write
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
    assert api.get(f"/v1/messages/{turn.message_id}").json()["status"] == "streaming"
    time.sleep(2.1)
    [listed] = api.get(f"/v1/conversations/{turn.conversation_id}/messages").json()["items"]
    assert listed["status"] == "failed" and listed["errorCode"] == "interrupted"
    resumed = _resume(server, token, turn.message_id)
    assert resumed.error["code"] == "interrupted"


def test_a_final_write_that_fails_is_reported_never_silently_lost(make_settings, user, mock_llm):
    """DynamoDB goes away mid-answer: the client is told the answer was not saved."""
    from chatrelay.api.app import create_app
    from tests.support.servers import ServerThread

    ddb = dynamodb_local.start()
    try:
        ensure_table(dynamodb_local.local_client(ddb.endpoint), TABLE)
        server = ServerThread(create_app(make_settings(dynamodb_endpoint_url=ddb.endpoint))).start()
        token = login(server.url, user)
        gate = uuid.uuid4().hex
        events = []
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", f"{server.url}/v1/chat/stream",
                          json={"prompt": f"[mock tokens=5 hold_after=2 gate={gate} interval=0]"},
                          headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            for event in iter_events(response):
                events.append(event)
                if event.event == "message" and len([e for e in events if e.event == "message"]) == 2:
                    ddb.stop()  # storage is gone before the turn ends
                    httpx.post(f"{mock_llm.url}/_mock/gates/{gate}").raise_for_status()
        result = StreamResult(200, response.headers, events)
        assert result.error["code"] == "not_saved"
        assert result.text == answer_text(5)
        assert events[-1].data == "[DONE]"
        server.stop()
    finally:
        ddb.stop()


@pytest.mark.parametrize("last_event_id", ["²".encode(), "١٢".encode(), b"9" * 5000, b"-1", b"1e3", b"5x"])
def test_a_last_event_id_that_is_not_an_ascii_offset_is_422(resumable, user, last_event_id):
    """Issue 17: Unicode digits (str.isdigit) or thousands of digits were a 500."""
    token = login(resumable.url, user)
    full = stream_chat(resumable.url, token, {"prompt": "[mock tokens=2 interval=0]"})
    response = _resume(resumable, token, full.meta["messageId"], last_event_id=last_event_id)
    assert response.status == 422


def test_followers_of_one_answer_are_capped(start_app, user, mock_llm):
    """Issue 17: each follower polls the table for up to the answer's time limit, so they are bounded."""
    server = start_app(finish_on_disconnect=True, max_followers_per_message=1, resume_poll_interval=0.05)
    token = login(server.url, user)
    gate = uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=20) as client:
        with client.stream("POST", f"{server.url}/v1/chat/stream", headers=headers,
                           json={"prompt": f"[mock tokens=6 hold_after=1 gate={gate}]"}) as live:
            message_id = live.headers["x-message-id"]
            with client.stream("GET", f"{server.url}/v1/messages/{message_id}/stream", headers=headers) as first:
                assert first.status_code == 200
                second = client.get(f"{server.url}/v1/messages/{message_id}/stream", headers=headers)
                assert second.status_code == 429 and second.json()["code"] == "too_many_resumes"
                assert int(second.headers["retry-after"]) >= 1
                httpx.post(f"{mock_llm.url}/_mock/gates/{gate}", timeout=5)
                list(iter_events(first))
            list(iter_events(live))
        # Once the first follower is gone, following is possible again.
        again = client.get(f"{server.url}/v1/messages/{message_id}/stream", headers=headers)
        assert again.status_code == 200
