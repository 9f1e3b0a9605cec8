"""Quotas and rate limits: refused with 429 before any upstream call and before anything is stored.

Limits live in DynamoDB Local (atomic conditional writes), so they hold across
instances; the concurrency test fires 50 requests of one user at once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
import pytest

from chatrelay.quotas import LeaseResult, QuotaStore
from chatrelay.store.table import Table
from chatrelay_dev.local.dynamodb_local import local_client
from tests.conftest import TABLE, login
from tests.support.servers import get_json, wait_until
from tests.support.sse_client import stream_chat


def _upstream_calls(mock_llm, marker: str) -> list[dict]:
    return [r for r in get_json(f"{mock_llm.url}/_mock/requests")
            if marker in str(r["body"]["messages"][-1]["content"])]


def _conversations(server, token) -> list[dict]:
    response = httpx.get(f"{server.url}/v1/conversations", params={"limit": 100},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return response.json()["items"]


def _assert_429(result, code: str) -> int:
    assert result.status == 429, result.raw
    body = httpx.Response(429, content=result.raw).json()
    assert body["code"] == code
    retry_after = int(result.headers["retry-after"])
    assert retry_after >= 1 and body["retryAfter"] == retry_after
    return retry_after


def test_requests_per_minute(start_app, mock_llm, user):
    server = start_app(rate_limit_per_minute=3)
    token = login(server.url, user)
    marker = uuid.uuid4().hex
    # Stay within one minute window, so the count is exact.
    if time.time() % 60 > 55:
        time.sleep(61 - time.time() % 60)
    results = [stream_chat(server.url, token, {"prompt": f"{marker} {i} [mock tokens=1]"}) for i in range(4)]
    assert [r.status for r in results[:3]] == [200, 200, 200]
    retry_after = _assert_429(results[3], "rate_limited")
    assert retry_after <= 60
    assert len(_upstream_calls(mock_llm, marker)) == 3
    assert len(_conversations(server, token)) == 3
    # Another user has a budget of their own.
    assert stream_chat(server.url, login(server.url, user + "-b"), {"prompt": "x [mock tokens=1]"}).status == 200


def test_requests_per_minute_hold_under_fifty_concurrent_requests(start_app, mock_llm, user):
    server = start_app(rate_limit_per_minute=5)
    token = login(server.url, user)
    marker = uuid.uuid4().hex
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)

    def one(i: int) -> int:
        return stream_chat(server.url, token, {"prompt": f"{marker} {i} [mock tokens=1]"}, timeout=30).status

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(one, range(50)))
    assert statuses.count(200) == 5 and statuses.count(429) == 45
    assert len(_upstream_calls(mock_llm, marker)) == 5
    assert len(_conversations(server, token)) == 5


def test_tokens_per_day(start_app, mock_llm, user):
    server = start_app(token_quota_per_day=60)
    token = login(server.url, user)
    marker = uuid.uuid4().hex
    first = stream_chat(server.url, token, {"prompt": f"{marker} [mock tokens=20]"})
    assert first.status == 200 and 20 < first.done["usage"]["totalTokens"] < 60
    # The relay's on_end hook adds the usage once the turn has ended.
    second = stream_chat(server.url, token, {"prompt": f"{marker} b [mock tokens=20]"})
    assert second.status == 200  # under 60 used: still let in (this turn crosses the limit)
    third = stream_chat(server.url, token, {"prompt": f"{marker} c [mock tokens=20]"})
    retry_after = _assert_429(third, "token_quota_exceeded")
    assert retry_after <= 86400 + 1
    assert len(_upstream_calls(mock_llm, marker)) == 2
    assert len(_conversations(server, token)) == 2


def test_fifty_concurrent_requests_never_start_more_streams_than_the_cap(start_app, mock_llm, user):
    cap = 3
    server = start_app(max_concurrent_streams=cap)
    token = login(server.url, user)
    gate = uuid.uuid4().hex
    marker = f"cap-{gate}"
    statuses: list[int] = []
    refused = threading.Semaphore(0)

    def one(i: int) -> int:
        body = {"prompt": f"{marker} {i} [mock tokens=4 hold_after=2 gate={gate} interval=0]"}
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{server.url}/v1/chat/stream", json=body,
                          headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            if response.status_code != 200:
                response.read()
                assert response.json()["code"] == "too_many_streams"
                assert response.headers["retry-after"]
                refused.release()
            else:
                response.read()  # held by the gate until it is released below
            statuses.append(response.status_code)
            return response.status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(one, i) for i in range(50)]
        for _ in range(50 - cap):
            assert refused.acquire(timeout=60), "the refusals did not arrive"
        # Every refusal is in while the admitted streams are still held open.
        wait_until(lambda: len(_upstream_calls(mock_llm, marker)) == cap)
        assert len(_upstream_calls(mock_llm, marker)) == cap
        httpx.post(f"{mock_llm.url}/_mock/gates/{gate}", timeout=10)
        results = [f.result(timeout=60) for f in futures]
    assert results.count(200) == cap and results.count(429) == 50 - cap
    assert len(_upstream_calls(mock_llm, marker)) == cap
    conversations = _conversations(server, token)
    assert len(conversations) == cap
    # The leases were given back when the turns ended: a new stream is let in.
    assert stream_chat(server.url, token, {"prompt": "after [mock tokens=1]"}).status == 200


def test_a_stopped_or_failed_stream_gives_its_slot_back(start_app, user):
    server = start_app(max_concurrent_streams=1)
    token = login(server.url, user)
    assert stream_chat(server.url, token, {"prompt": "x [mock fault=http_500]"}).error is not None
    assert stream_chat(server.url, token, {"prompt": "x [mock fault=cut fault_after=1]"}).error is not None
    assert stream_chat(server.url, token, {"prompt": "ok [mock tokens=1]"}).status == 200


def test_a_retried_request_id_replays_without_a_second_slot(start_app, user):
    server = start_app(max_concurrent_streams=1)
    token = login(server.url, user)
    body = {"prompt": "once [mock tokens=3]", "requestId": uuid.uuid4().hex}
    first = stream_chat(server.url, token, body)
    again = stream_chat(server.url, token, body)
    assert first.status == again.status == 200 and again.text == first.text


def test_limits_of_zero_cost_nothing(app_server, token, user, dynamodb):
    """The default server has every limit off: no quota item is ever written."""
    result = stream_chat(app_server.url, token, {"prompt": "free [mock tokens=1]"})
    assert result.status == 200
    items = local_client(dynamodb.endpoint).query(
        TableName=TABLE, KeyConditionExpression="pk = :pk AND begins_with(sk, :q)",
        ExpressionAttributeValues={":pk": {"S": f"USER#{user}"}, ":q": {"S": "QUOTA#"}})["Items"]
    assert items == []


# ---- the lease store itself, against DynamoDB Local -------------------------------------------

@pytest.fixture
def quota_store(dynamodb):
    return QuotaStore(Table(TABLE, endpoint_url=dynamodb.endpoint))


def test_leases_of_crashed_instances_expire(quota_store, user):
    async def run():
        now = 1_000
        assert await quota_store.acquire_stream(user, "A", cap=2, now=now, expires_at=now + 60) is LeaseResult.ACQUIRED
        assert await quota_store.acquire_stream(user, "B", cap=2, now=now, expires_at=now + 600) is LeaseResult.ACQUIRED
        assert await quota_store.acquire_stream(user, "C", cap=2, now=now, expires_at=now + 60) is LeaseResult.FULL
        assert await quota_store.acquire_stream(user, "A", cap=2, now=now, expires_at=now + 60) is LeaseResult.HELD
        # A's instance died without releasing; after its expiry the slot is reclaimed, B's is not.
        later = now + 61
        assert await quota_store.acquire_stream(user, "C", cap=2, now=later, expires_at=later + 60) is \
            LeaseResult.ACQUIRED
        assert set(await quota_store.active_streams(user)) == {"B", "C"}
        await quota_store.release_stream(user, "C")
        await quota_store.release_stream(user, "C")  # twice: a no-op
        assert set(await quota_store.active_streams(user)) == {"B"}

    anyio.run(run)


def test_rpm_counter_is_atomic_under_concurrency(quota_store, user):
    async def run():
        admitted = []

        async def hit():
            admitted.append(await quota_store.count_request(user, "202601010000", limit=7, expires_at=2_000_000_000))

        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(hit)
        return admitted

    admitted = anyio.run(run)
    assert admitted.count(True) == 7 and admitted.count(False) == 23


def test_quotas_are_per_user(quota_store, user):
    async def run():
        now = 5
        assert await quota_store.acquire_stream(user, "M", cap=1, now=now, expires_at=99) is LeaseResult.ACQUIRED
        assert await quota_store.acquire_stream(user + "x", "N", cap=1, now=now, expires_at=99) is LeaseResult.ACQUIRED

    anyio.run(run)


def test_refused_requests_do_not_count_against_the_rate_limit(start_app, user):
    """Issue 17: a chat request answered 404 (not your conversation) or 422 (conversation full)
    used to take a place in the minute's count."""
    server = start_app(rate_limit_per_minute=2, max_conversation_turns=1)
    token = login(server.url, user)
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    for _ in range(3):
        missing = stream_chat(server.url, token, {"prompt": "x [mock tokens=1]", "conversationId": "nope"})
        assert missing.status == 404
    first = stream_chat(server.url, token, {"prompt": "one [mock tokens=1]"})
    assert first.status == 200
    full = stream_chat(server.url, token, {"prompt": "two [mock tokens=1]",
                                           "conversationId": first.headers["x-conversation-id"]})
    assert full.status == 422 and json.loads(full.raw)["code"] == "conversation_too_long"
    assert stream_chat(server.url, token, {"prompt": "three [mock tokens=1]"}).status == 200
    _assert_429(stream_chat(server.url, token, {"prompt": "four [mock tokens=1]"}), "rate_limited")
