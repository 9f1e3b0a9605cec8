"""The table's own DynamoDB client (store/wire.py) against DynamoDB Local: what the store tests do not
reach (binary values, a refused expression, pages, batches) and that it matches botocore's answers."""

from __future__ import annotations

import uuid

import anyio
import pytest
from chatrelay import errors
from chatrelay.store.table import Table
from chatrelay_dev.local import dynamodb_local

from tests.conftest import TABLE


@pytest.fixture
def tables(dynamodb) -> tuple[Table, Table]:
    return Table(TABLE, endpoint_url=dynamodb.endpoint), Table(TABLE, client=dynamodb_local.local_client(dynamodb.endpoint))


def test_items_read_the_same_through_both_clients(tables):
    wire_table, boto_table = tables
    key = {"pk": f"USER#wire-{uuid.uuid4().hex[:8]}", "sk": "X#1"}

    async def main():
        written = await wire_table.update(
            key, "SET bin = :b, answer = :a, n = :n, nested = :m", return_new=True,
            values={":b": b"\x00\xff\x10", ":a": "你好 😀 \u2028 \r\n", ":n": 10**20, ":m": {"l": [1, True, None]}})
        return written, await wire_table.get(key), await boto_table.get(key)

    written, through_wire, through_botocore = anyio.run(main)
    assert written == through_wire == through_botocore
    assert through_wire["bin"] == b"\x00\xff\x10" and through_wire["answer"] == "你好 😀 \u2028 \r\n"


def test_a_refused_expression_and_a_failed_condition(tables):
    wire_table, _ = tables
    key = {"pk": f"USER#wire-{uuid.uuid4().hex[:8]}", "sk": "X#1"}

    async def main():
        with pytest.raises(errors.InvalidRequest):
            await wire_table.update(key, "SET = broken")
        assert not await wire_table.conditional_update(key, "SET a = :a", condition="attribute_exists(pk)",
                                                       values={":a": 1})

    anyio.run(main)


def test_pages_and_batch_deletes(tables):
    wire_table, boto_table = tables
    partition = f"USER#wire-{uuid.uuid4().hex[:8]}"

    async def main():
        for i in range(30):
            await wire_table.update({"pk": partition, "sk": f"X#{i:02d}"}, "SET i = :i", values={":i": i})
        first = await wire_table.query(partition, limit=7)
        second = await wire_table.query(partition, limit=7, cursor=first.next_cursor)
        keys = await wire_table.query_keys(partition, consistent=True)
        await wire_table.batch_delete(keys)
        return first, second, keys, await boto_table.query_all(partition, consistent=True)

    first, second, keys, left = anyio.run(main)
    assert [item["i"] for item in first.items + second.items] == list(range(14))
    assert len(keys) == 30 and left == []
