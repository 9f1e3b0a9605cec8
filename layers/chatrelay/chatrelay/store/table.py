"""The chat table: its keys, and the one way the app calls DynamoDB.

Every record family lives in one table (single-table design):

    item                   pk          sk                         gsi1pk                 gsi1sk
    conversation           USER#<uid>  CONV#<cid>                 USER#<uid>#CONVS       <updatedAt>#<cid>
    turn                   USER#<uid>  MSG#<mid>                  USER#<uid>#CONV#<cid>  <createTime>#<mid>
    refresh-token family   USER#<uid>  REFRESH#<family>
    requests this minute   USER#<uid>  QUOTA#RPM#<yyyymmddHHMM>
    tokens today           USER#<uid>  QUOTA#TPD#<yyyy-mm-dd>
    streams generating     USER#<uid>  QUOTA#STREAMS

Every key starts with the caller's user id, which comes from the verified token
only, so a read or write for someone else's id finds nothing (404, never 403), and
all of a user's data is one partition. Items are addressed by key with strongly
consistent reads; listings go through ``gsi1``.

The repositories (``store/dynamodb.py``: turns and conversations;
``store/refresh_tokens.py``; ``quotas/store.py``) build keys with the functions
here and call DynamoDB only through :class:`Table`, with plain Python values in and
out. The client (``chatrelay.aws.DynamoDBClient``) answers on the event loop, over the same
lean HTTP/1.1 pool as the vendors (``chatrelay/http1.py``): no worker thread per call, which
cost the relay a thread hand-off and the GIL on every checkpoint; an injected blocking
client (botocore's) runs in worker threads instead. Calls in flight are bounded by a
capacity limiter either way. The client's errors (its own or botocore's) become
``chatrelay.errors`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NoReturn, TypedDict, TypeVar, Unpack

import anyio

from chatrelay import errors
from chatrelay.aws import AwsUnreachable, DynamoDBClient
from chatrelay.store.records import Page

T = TypeVar("T")
Key = dict[str, str]
Item = dict[str, Any]


class ExpressionAttributes(TypedDict, total=False):
    """The ``#name`` and ``:value`` placeholders of an update's expressions."""

    names: dict[str, str]
    values: Mapping[str, Any]


GSI1 = "gsi1"
_PARTITION_KEY = {None: "pk", GSI1: "gsi1pk"}
_BATCH_WRITE_LIMIT = 25  # requests per BatchWriteItem (DynamoDB's limit)


# ---- keys --------------------------------------------------------------------


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def turn_key(user_id: str, message_id: str) -> Key:
    return {"pk": user_pk(user_id), "sk": f"MSG#{message_id}"}


def conversation_key(user_id: str, conversation_id: str) -> Key:
    return {"pk": user_pk(user_id), "sk": f"CONV#{conversation_id}"}


def is_conversation_key(key: Mapping[str, str]) -> bool:
    return key["sk"].startswith("CONV#")


def refresh_token_key(user_id: str, family: str) -> Key:
    return {"pk": user_pk(user_id), "sk": f"REFRESH#{family}"}


def requests_per_minute_key(user_id: str, minute: str) -> Key:
    return {"pk": user_pk(user_id), "sk": f"QUOTA#RPM#{minute}"}


def tokens_per_day_key(user_id: str, day: str) -> Key:
    return {"pk": user_pk(user_id), "sk": f"QUOTA#TPD#{day}"}


def streams_key(user_id: str) -> Key:
    return {"pk": user_pk(user_id), "sk": "QUOTA#STREAMS"}


def conversations_index_pk(user_id: str) -> str:
    """``gsi1pk`` of a user's conversations."""
    return f"{user_pk(user_id)}#CONVS"


def turns_index_pk(user_id: str, conversation_id: str) -> str:
    """``gsi1pk`` of a conversation's turns."""
    return f"{user_pk(user_id)}#CONV#{conversation_id}"


def index_sk(timestamp: str, item_id: str) -> str:
    """``gsi1sk``: in time order, ties broken by id."""
    return f"{timestamp}#{item_id}"


# ---- values --------------------------------------------------------------------


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item, key or set of expression values in DynamoDB's wire form; None attributes are left out."""
    return {name: _attribute(value) for name, value in item.items() if value is not None}


def deserialize(raw: Mapping[str, Any]) -> Item:
    """An item from DynamoDB's wire form, numbers as ``int`` (``float`` where fractional)."""
    return {name: _value(attribute) for name, attribute in raw.items()}


def _attribute(value: Any) -> dict[str, Any]:
    # boto3's TypeSerializer for the types the app stores, without importing boto3 (or botocore).
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        return {"M": {name: _attribute(v) for name, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [_attribute(v) for v in value]}
    raise TypeError(f"DynamoDB cannot store {type(value).__name__} (floats: use int or Decimal)")


def _value(attribute: Mapping[str, Any]) -> Any:
    [(kind, value)] = attribute.items()
    match kind:
        case "S" | "B" | "BOOL":
            return value
        case "N":
            return _number(value)
        case "NULL":
            return None
        case "M":
            return {name: _value(v) for name, v in value.items()}
        case "L":
            return [_value(v) for v in value]
        case "SS" | "BS":
            return set(value)
        case "NS":
            return {_number(v) for v in value}
    raise TypeError(f"unknown DynamoDB type {kind!r}")


def _number(text: str) -> int | float:
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() else float(number)


# ---- cursors -------------------------------------------------------------------


def _encode_cursor(last_key: dict[str, Any] | None) -> str | None:
    if not last_key:
        return None
    return base64.urlsafe_b64encode(json.dumps(last_key, separators=(",", ":")).encode()).decode().rstrip("=")


_CURSOR_KEYS = {"pk": {"pk", "sk"}, "gsi1pk": {"pk", "sk", "gsi1pk", "gsi1sk"}}
"""The attributes of a start key, by the partition key of the listing (the table's, or gsi1's)."""
MAX_CURSOR_CHARS = 2048


def _decode_cursor(cursor: str | None, partition_key: str, partition: str) -> dict[str, Any] | None:
    """The start key a cursor stands for; InvalidCursor unless a page of this very partition gave it.

    Checked strictly before DynamoDB sees it: at most ``MAX_CURSOR_CHARS``, an object of exactly
    the listing's key attributes, each a short string (``{"S": ...}``), so a forged cursor is a
    422, never a ValidationException (503) nor a parser's recursion (500).
    """
    if not cursor:
        return None
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if raw.count(b"{") + raw.count(b"[") > 2 * len(_CURSOR_KEYS[partition_key]) + 1:
            raise ValueError("nested")  # before json.loads can recurse into it
        start = json.loads(raw)
        ok = (
            isinstance(start, dict)
            and set(start) == _CURSOR_KEYS[partition_key]
            and all(isinstance(v, dict) and set(v) == {"S"} and isinstance(v["S"], str) and 0 < len(v["S"]) <= 512
                    for v in start.values())
            and start[partition_key]["S"] == partition
        )
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        ok = False
    if not ok:
        raise errors.InvalidCursor()
    return start


# ---- the client ------------------------------------------------------------------


_clients: dict[tuple[str | None, str, int], DynamoDBClient] = {}
_clients_lock = threading.Lock()


def dynamodb_client(endpoint_url: str | None = None, region: str = "us-east-1", max_pool: int = 64) -> DynamoDBClient:
    """The process's DynamoDB client for these settings: standard retries (5 attempts, backoff
    with jitter), 3 s to connect, 10 s to answer.

    Built once per process: one client (one connection pool) is safe to share between
    threads. ``forget_clients()`` drops them (after a SnapStart restore).
    """
    key = (endpoint_url, region, max_pool)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = DynamoDBClient(region=region, endpoint=endpoint_url, connect_timeout=3,
                                                    read_timeout=10, max_pool=max_pool, max_attempts=5)
    return client


def forget_clients() -> None:
    """Close and drop the process's DynamoDB clients: the next ``Table`` gets a new one."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def _error_response(exc: Exception) -> dict[str, Any] | None:
    """The error answer an exception carries (``chatrelay.aws.AwsError``, botocore's ``ClientError``)."""
    response = getattr(exc, "response", None)
    return response if isinstance(response, dict) and isinstance(response.get("Error"), dict) else None


def _no_answer(exc: Exception) -> bool:
    """No answer at all: ``AwsUnreachable``, or any of botocore's own errors (an injected botocore client)."""
    return isinstance(exc, AwsUnreachable) or type(exc).__module__.startswith("botocore.")


def _translate(response: Mapping[str, Any]) -> errors.ChatRelayError:
    error = response.get("Error", {})
    code = error.get("Code", "")
    if code == "ConditionalCheckFailedException":
        return errors.ConditionFailed()
    if code == "TransactionCanceledException":
        reasons = tuple(reason.get("Code") for reason in response.get("CancellationReasons", []))
        return errors.TransactionCanceled(reasons=reasons)
    if code == "ValidationException":
        return errors.InvalidRequest(error.get("Message", "invalid"))
    return errors.StorageError(f"DynamoDB {code}")


_METHODS = {"GetItem": "get_item", "PutItem": "put_item", "UpdateItem": "update_item", "Query": "query",
            "TransactWriteItems": "transact_write_items", "BatchWriteItem": "batch_write_item"}
"""The operations the app calls, by botocore's method names (an injected botocore client)."""
_in_flight: set[asyncio.Task] = set()
"""Calls whose caller may have been cancelled: held here until they end."""


def _settled(task: asyncio.Task) -> None:
    _in_flight.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a caller that was cancelled no longer awaits it


def _raise_translated(exc: Exception) -> NoReturn:
    """Raise ``exc`` as the error tree's when it is a DynamoDB answer or no answer at all, else as it is."""
    response = _error_response(exc)
    if response is not None:
        raise _translate(response) from exc
    if _no_answer(exc):
        raise errors.StorageError(f"DynamoDB {type(exc).__name__}") from exc
    raise exc


def _translated(method: Callable[..., dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    try:
        return method(**params)
    except Exception as exc:
        _raise_translated(exc)


async def _translating(acall: Callable[..., Any], operation: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return await acall(operation, params)
    except Exception as exc:
        _raise_translated(exc)


class Table:
    """One DynamoDB table; every call the app makes to DynamoDB goes through here."""

    def __init__(
        self,
        name: str,
        *,
        client: Any | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        max_in_flight: int = 64,
    ) -> None:
        self.name = name
        # An injected client wins; otherwise the process's one.
        self._client = client or dynamodb_client(endpoint_url, region, max_in_flight)
        self._limiter = anyio.CapacityLimiter(max_in_flight)

    @property
    def client(self) -> Any:
        return self._client

    async def _call(self, operation: str, /, **params: Any) -> dict[str, Any]:
        """DynamoDB's answer to ``operation`` (``"GetItem"``...), its errors as ``chatrelay.errors``.

        The app's own client answers on the event loop (``acall``); an injected blocking client
        (botocore's) runs in a worker thread. Either way a call that started is not abandoned
        when its caller is cancelled: a turn's ending lands even if the request that ran it is
        gone (the task runs on, shielded, like a worker thread would).
        """
        acall = getattr(self._client, "acall", None)
        if acall is None:
            method = getattr(self._client, _METHODS[operation])
            return await anyio.to_thread.run_sync(lambda: _translated(method, params), limiter=self._limiter)
        async with self._limiter:  # as many calls in flight as there would be worker threads
            task = asyncio.ensure_future(_translating(acall, operation, params))
            _in_flight.add(task)
            task.add_done_callback(_settled)
            return await asyncio.shield(task)

    async def get(self, key: Key, *, consistent: bool = True, projection: str | None = None) -> Item | None:
        """The item at ``key`` (only the ``projection`` attributes, if given), or None."""
        extra = {"ProjectionExpression": projection} if projection else {}
        response = await self._call(
            "GetItem", TableName=self.name, Key=serialize(key), ConsistentRead=consistent, **extra
        )
        item = response.get("Item")
        return deserialize(item) if item is not None else None

    async def put_if_absent(self, item: Item) -> bool:
        """Write ``item`` unless its key is taken: True when written."""
        try:
            await self._call("PutItem", TableName=self.name, Item=serialize(item),
                             ConditionExpression="attribute_not_exists(pk)")
        except errors.ConditionFailed:
            return False
        return True

    async def update(
        self, key: Key, expression: str, *, condition: str | None = None, return_new: bool = False,
        **attributes: Unpack[ExpressionAttributes],
    ) -> Item | None:
        """Apply the update ``expression`` to ``key``; with ``return_new``, return the item as written.

        Raises ConditionFailed, writing nothing, when ``condition`` is false.
        """
        request = self._update_request(key, expression, condition, attributes)
        if return_new:
            request["ReturnValues"] = "ALL_NEW"
        response = await self._call("UpdateItem", **request)
        return deserialize(response["Attributes"]) if return_new else None

    async def conditional_update(
        self, key: Key, expression: str, *, condition: str, **attributes: Unpack[ExpressionAttributes]
    ) -> bool:
        """``update`` under ``condition``: True when written, False when the condition was false."""
        try:
            await self.update(key, expression, condition=condition, **attributes)
        except errors.ConditionFailed:
            return False
        return True

    def _update_request(
        self, key: Key, expression: str, condition: str | None, attributes: ExpressionAttributes
    ) -> dict[str, Any]:
        request: dict[str, Any] = {"TableName": self.name, "Key": serialize(key), "UpdateExpression": expression}
        if condition:
            request["ConditionExpression"] = condition
        if attributes.get("names"):
            request["ExpressionAttributeNames"] = attributes["names"]
        if attributes.get("values"):
            request["ExpressionAttributeValues"] = serialize(attributes["values"])
        return request

    # ---- transactions -------------------------------------------------------------

    def put_op(self, item: Item, *, condition: str | None = None) -> dict[str, Any]:
        """A put of ``item``, for ``transact_write``."""
        put: dict[str, Any] = {"TableName": self.name, "Item": serialize(item)}
        if condition:
            put["ConditionExpression"] = condition
        return {"Put": put}

    def update_op(
        self, key: Key, expression: str, *, condition: str | None = None, **attributes: Unpack[ExpressionAttributes]
    ) -> dict[str, Any]:
        """An update of ``key``, for ``transact_write``."""
        return {"Update": self._update_request(key, expression, condition, attributes)}

    async def transact_write(self, operations: Sequence[dict[str, Any]]) -> None:
        """All of ``operations`` or none; TransactionCanceled says why not, per operation."""
        await self._call("TransactWriteItems", TransactItems=list(operations))

    # ---- queries ----------------------------------------------------------------

    async def query(
        self,
        partition: str,
        *,
        index: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        cursor: str | None = None,
    ) -> Page:
        """One page of the items whose partition key (the table's or ``index``'s) is ``partition``,
        in sort-key order (descending with ``newest_first``); its ``next_cursor`` asks for the next.

        Raises InvalidCursor for a cursor that no page of this partition gave.
        """
        start = _decode_cursor(cursor, _PARTITION_KEY[index], partition)
        items, last_key = await self._query(partition, index, limit=limit, newest_first=newest_first, start=start)
        return Page(items, _encode_cursor(last_key))

    async def query_all(
        self, partition: str, *, index: str | None = None, projection: str | None = None, consistent: bool = False
    ) -> list[Item]:
        """Every item of ``partition`` (only the ``projection`` attributes, if given), page after page."""
        items: list[Item] = []
        start: dict[str, Any] | None = None
        while True:
            page, start = await self._query(partition, index, projection=projection, consistent=consistent,
                                            start=start)
            items.extend(page)
            if not start:
                return items

    async def query_keys(self, partition: str, *, index: str | None = None, consistent: bool = False) -> list[Key]:
        """The table keys of every item of ``partition`` (to delete them)."""
        items = await self.query_all(partition, index=index, projection="pk, sk", consistent=consistent)
        return [{"pk": item["pk"], "sk": item["sk"]} for item in items]

    async def _query(
        self,
        partition: str,
        index: str | None,
        *,
        limit: int | None = None,
        newest_first: bool = False,
        projection: str | None = None,
        consistent: bool = False,
        start: dict[str, Any] | None = None,
    ) -> tuple[list[Item], dict[str, Any] | None]:
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": f"{_PARTITION_KEY[index]} = :pk",
            "ExpressionAttributeValues": serialize({":pk": partition}),
            "ScanIndexForward": not newest_first,
        }
        optional = {"IndexName": index, "Limit": limit, "ProjectionExpression": projection,
                    "ConsistentRead": consistent or None, "ExclusiveStartKey": start}
        request.update({name: value for name, value in optional.items() if value})
        response = await self._call("Query", **request)
        return [deserialize(raw) for raw in response.get("Items", [])], response.get("LastEvaluatedKey")

    # ---- deletes ----------------------------------------------------------------

    async def batch_delete(self, keys: Sequence[Key]) -> None:
        """Delete the items at ``keys``, in batches taken in order; unprocessed deletes are retried."""
        for offset in range(0, len(keys), _BATCH_WRITE_LIMIT):
            await self._delete_batch(keys[offset : offset + _BATCH_WRITE_LIMIT])

    async def _delete_batch(self, keys: Sequence[Key]) -> None:
        requests = {self.name: [{"DeleteRequest": {"Key": serialize(key)}} for key in keys]}
        for attempt in range(8):
            response = await self._call("BatchWriteItem", RequestItems=requests)
            requests = response.get("UnprocessedItems") or {}
            if not requests:
                return
            await anyio.sleep(min(0.05 * 2**attempt, 1.0))
        raise errors.StorageError("could not delete every item")
