"""The table core's pure parts: values in DynamoDB's wire form, keys, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from chatrelay.store import table

ITEM = {
    "pk": "USER#u1",
    "question": "你好, tell me a story",
    "useful": -1,
    "ttftMs": 0,
    "big": 10**30,
    "stopRequested": True,
    "usage": {"promptTokens": 12, "completionTokens": 40, "totalTokens": 52},
    "leases": {"01KAV3": 1_700_000_000},
    "window": ["a", 1, False, None, {"nested": None}],
    "blob": b"\x00\xff",
    "ratio": Decimal("0.25"),
}


def test_serialize_writes_what_boto3_writes():
    boto3_form = {name: TypeSerializer().serialize(value) for name, value in ITEM.items()}
    assert table.serialize(ITEM) == boto3_form


def test_serialize_leaves_out_none_attributes_and_refuses_floats_like_boto3():
    assert table.serialize({"a": 1, "b": None}) == {"a": {"N": "1"}}
    with pytest.raises(TypeError):
        table.serialize({"x": 0.5})
    with pytest.raises(TypeError):
        TypeSerializer().serialize(0.5)


def test_deserialize_reads_boto3s_wire_form_with_plain_numbers():
    raw = {name: TypeSerializer().serialize(value) for name, value in ITEM.items()}
    raw["tags"] = {"SS": ["a", "b"]}
    raw["scores"] = {"NS": ["1", "2.5"]}
    plain = table.deserialize(raw)
    assert plain == {**ITEM, "ratio": 0.25, "tags": {"a", "b"}, "scores": {1, 2.5}}
    assert type(plain["useful"]) is int and type(plain["ratio"]) is float
    assert {name: TypeDeserializer().deserialize(value) for name, value in raw.items()}["usage"] == ITEM["usage"]


def test_every_key_begins_with_the_users_partition():
    user = "wx:o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
    keys = [table.turn_key(user, "M1"), table.conversation_key(user, "C1"), table.refresh_token_key(user, "F1"),
            table.requests_per_minute_key(user, "202601010000"), table.tokens_per_day_key(user, "2026-01-01"),
            table.streams_key(user)]
    assert {key["pk"] for key in keys} == {f"USER#{user}"}
    assert [key["sk"] for key in keys] == ["MSG#M1", "CONV#C1", "REFRESH#F1", "QUOTA#RPM#202601010000",
                                           "QUOTA#TPD#2026-01-01", "QUOTA#STREAMS"]
    assert [table.is_conversation_key(key) for key in keys] == [False, True, False, False, False, False]
    assert table.conversations_index_pk(user) == f"USER#{user}#CONVS"
    assert table.turns_index_pk(user, "C1") == f"USER#{user}#CONV#C1"


def test_importing_the_table_core_does_not_import_boto3():
    """boto3 imports s3transfer, which the store never uses: the core talks to botocore directly."""
    probe = "import sys, chatrelay.store.table; print(sorted({'boto3', 's3transfer'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
