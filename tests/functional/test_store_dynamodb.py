"""The DynamoDB store against DynamoDB Local (the table built from template.yaml), through both ways
the table reaches DynamoDB: its own JSON protocol client (store/wire.py, what the app uses) and an
injected botocore client (tests, tools, a configured HTTP proxy)."""

from __future__ import annotations

import time
import uuid

import anyio
import pytest
from chatrelay import errors
from chatrelay.ids import message_id_for_request, new_ulid
from chatrelay.store.dynamodb import DynamoDBChatStore
from chatrelay.store.records import Turn, TurnStatus, utc_now
from chatrelay.store.table import Table
from chatrelay_dev.local import dynamodb_local

from tests.conftest import TABLE


@pytest.fixture(params=["wire", "botocore"])
def store(dynamodb, request) -> DynamoDBChatStore:
    if request.param == "wire":
        table = Table(TABLE, endpoint_url=dynamodb.endpoint)
    else:
        table = Table(TABLE, client=dynamodb_local.local_client(dynamodb.endpoint))
    return DynamoDBChatStore(table, retention_days=7)


@pytest.fixture
def raw(dynamodb):
    """A plain botocore client, to read items as DynamoDB holds them."""
    return dynamodb_local.local_client(dynamodb.endpoint)


def _turn(conversation_id: str, question: str = "q", message_id: str | None = None) -> Turn:
    return Turn(message_id or new_ulid(), conversation_id, question, "mock", utc_now())


def run(fn, *args, **kwargs):
    return anyio.run(lambda: fn(*args, **kwargs))


def test_start_creates_the_conversation_and_the_turn_with_ttl(store, raw, user):
    cid = new_ulid()
    start = run(store.start_turn, user, None, _turn(cid, "What is SSE?"))
    assert not start.duplicate and start.conversation.title == "What is SSE?"
    item = raw.get_item(TableName=TABLE, Key={"pk": {"S": f"USER#{user}"}, "sk": {"S": f"MSG#{start.turn.message_id}"}})
    expires = int(item["Item"]["expiresAt"]["N"])
    assert abs(expires - (time.time() + 7 * 86400)) < 60
    conversation = run(store.get_conversation, user, cid)
    assert conversation.turn_count == 1


def test_a_turn_for_someone_elses_conversation_is_refused_and_nothing_is_written(store, user):
    cid = new_ulid()
    run(store.start_turn, user, None, _turn(cid))
    intruder = "intruder-" + uuid.uuid4().hex[:6]
    turn = _turn(cid)
    with pytest.raises(errors.NotFound):
        run(store.start_turn, intruder, cid, turn)
    assert run(store.get_turn, intruder, turn.message_id) is None
    assert run(store.get_conversation, user, cid).turn_count == 1


def test_same_request_id_starts_one_turn(store, user):
    mid = message_id_for_request(user, "req-1")
    cid = new_ulid()
    first = run(store.start_turn, user, None, _turn(cid, message_id=mid))
    second = run(store.start_turn, user, None, _turn(new_ulid(), message_id=mid))
    assert second.duplicate and second.turn.conversation_id == first.turn.conversation_id
    assert run(store.list_conversations, user).items[0].conversation_id == cid
    assert len(run(store.list_conversations, user).items) == 1


def test_finish_is_written_once(store, user):
    turn = run(store.start_turn, user, None, _turn(new_ulid())).turn
    assert run(store.finish_turn, user, turn.message_id, status=TurnStatus.COMPLETE, answer="a",
               usage={"promptTokens": 1, "completionTokens": 1, "totalTokens": 2})
    assert not run(store.finish_turn, user, turn.message_id, status=TurnStatus.FAILED, answer="b")
    stored = run(store.get_turn, user, turn.message_id)
    assert (stored.status, stored.answer, stored.usage["totalTokens"]) == (TurnStatus.COMPLETE, "a", 2)


def test_checkpoint_refuses_after_a_stop_request_or_the_ending(store, user):
    turn = run(store.start_turn, user, None, _turn(new_ulid())).turn
    assert run(store.checkpoint_turn, user, turn.message_id, answer="par")
    assert run(store.get_turn, user, turn.message_id).answer == "par"
    run(store.request_stop, user, turn.message_id)
    assert run(store.stop_requested, user, turn.message_id)
    assert not run(store.checkpoint_turn, user, turn.message_id, answer="partial")


def test_delete_removes_more_turns_than_one_batch(store, user):
    cid = new_ulid()
    run(store.start_turn, user, None, _turn(cid))
    for _ in range(30):
        run(store.start_turn, user, cid, _turn(cid))
    assert run(store.delete_conversation, user, cid) == 31
    assert run(store.get_conversation, user, cid) is None
    assert run(store.list_conversations, user).items == []


def test_a_cursor_from_another_listing_is_refused(store, user):
    cid = new_ulid()
    run(store.start_turn, user, None, _turn(cid))
    run(store.start_turn, user, None, _turn(new_ulid()))
    cursor = run(store.list_conversations, user, limit=1).next_cursor
    assert cursor
    with pytest.raises(errors.InvalidRequest):
        run(store.list_conversations, "someone-else", cursor=cursor)


def test_item_size_stays_under_the_limit_for_the_longest_answer(store, user):
    """100,000 CJK characters (the answer cap) plus an 8,000-character question fit in one item."""
    turn = run(store.start_turn, user, None, _turn(new_ulid(), "问" * 8000)).turn
    assert run(store.finish_turn, user, turn.message_id, status=TurnStatus.COMPLETE, answer="答" * 100_000)
    assert len(run(store.get_turn, user, turn.message_id).answer) == 100_000
