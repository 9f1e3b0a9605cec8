"""The DynamoDB store against DynamoDB Local (the table built from template.yaml)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from urllib.parse import urlsplit

import anyio
import pytest

from chatrelay import aws, errors
from chatrelay.ids import message_id_for_request, new_ulid
from chatrelay.store.dynamodb import DynamoDBChatStore
from chatrelay.store.records import Turn, TurnStatus, utc_now
from chatrelay.store.table import Table
from chatrelay_dev.local import dynamodb_local
from tests.conftest import TABLE


def app_client(endpoint: str) -> aws.DynamoDBClient:
    """The app's own client (calls on the event loop), as services.py builds it."""
    return aws.DynamoDBClient(region="us-east-1", endpoint=endpoint, credentials=aws.CredentialChain(
        environ={"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}))


@pytest.fixture(params=["app's client", "botocore"])
def store(request, dynamodb) -> DynamoDBChatStore:
    """Both kinds of client the table core takes: the app's own and an injected botocore one."""
    client = app_client(dynamodb.endpoint) if request.param == "app's client" else \
        dynamodb_local.local_client(dynamodb.endpoint)
    return DynamoDBChatStore(Table(TABLE, client=client), retention_days=7)


async def _read_http(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length")), 0)
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def throttling_once(endpoint: str):
    """A proxy in front of DynamoDB Local that throttles the first request, then forwards each one."""
    seen = asyncio.Queue()
    count = 0
    target = urlsplit(endpoint)

    async def on_connect(reader, writer):
        nonlocal count
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                request = await _read_http(reader)
                seen.put_nowait(request)
                count += 1
                if count == 1:
                    body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"slow down"}'
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                else:
                    up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
                    up_writer.write(request)
                    writer.write(await _read_http(up_reader))
                    up_writer.close()
                await writer.drain()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()


def test_a_write_whose_caller_is_cancelled_still_lands(dynamodb, user):
    """A turn's ending must be stored even when the request that ran it is cancelled meanwhile:
    here the first attempt is throttled and the caller is cancelled during the backoff."""
    store = DynamoDBChatStore(Table(TABLE, client=app_client(dynamodb.endpoint)), retention_days=7)
    turn = run(store.start_turn, user, None, _turn(new_ulid())).turn

    async def cancelled_finish() -> None:
        async with throttling_once(dynamodb.endpoint) as (proxy, seen):
            ending = DynamoDBChatStore(Table(TABLE, client=app_client(proxy)), retention_days=7)
            task = asyncio.ensure_future(ending.finish_turn(user, turn.message_id, status=TurnStatus.COMPLETE,
                                                            answer="kept"))
            await asyncio.wait_for(seen.get(), 5)  # throttled: the client now backs off
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            retried = await asyncio.wait_for(seen.get(), 5)  # the call ran on, shielded
            assert b"UpdateItem" in retried
            await asyncio.sleep(0.2)

    asyncio.run(cancelled_finish())
    stored = run(store.get_turn, user, turn.message_id)
    assert (stored.status, stored.answer) == (TurnStatus.COMPLETE, "kept")


def _turn(conversation_id: str, question: str = "q", message_id: str | None = None) -> Turn:
    return Turn(message_id or new_ulid(), conversation_id, question, "mock", utc_now())


def run(fn, *args, **kwargs):
    return anyio.run(lambda: fn(*args, **kwargs))


def test_start_creates_the_conversation_and_the_turn_with_ttl(store, user):
    cid = new_ulid()
    start = run(store.start_turn, user, None, _turn(cid, "What is SSE?"))
    assert not start.duplicate and start.conversation.title == "What is SSE?"
    key = {"pk": {"S": f"USER#{user}"}, "sk": {"S": f"MSG#{start.turn.message_id}"}}
    raw = store.table.client.get_item(TableName=TABLE, Key=key)
    expires = int(raw["Item"]["expiresAt"]["N"])
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
