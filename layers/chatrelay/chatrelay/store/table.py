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
out. The table speaks DynamoDB's JSON protocol on the event loop itself
(``store/wire.py``: no botocore, no worker thread, tens of microseconds of CPU per
call); only an injected botocore client (tests, tools) or a configured HTTP proxy
takes the botocore path, whose blocking calls run in worker threads (bounded by a
capacity limiter) so that the event loop that relays tokens never waits on them.
DynamoDB's errors become ``chatrelay.errors`` here (and in ``wire.py``) and nowhere
else.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypedDict, TypeVar, Unpack

import anyio

from chatrelay import errors
from chatrelay.store import wire
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
    # boto3's TypeSerializer for the types the app stores, without importing boto3 (which imports s3transfer).
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
        case "S" | "BOOL":
            return value
        case "B":  # bytes from botocore, base64 from the JSON protocol
            return value if isinstance(value, bytes) else base64.b64decode(value)
        case "N":
            return _number(value)
        case "NULL":
            return None
        case "M":
            return {name: _value(v) for name, v in value.items()}
        case "L":
            return [_value(v) for v in value]
        case "SS":
            return set(value)
        case "BS":
            return {v if isinstance(v, bytes) else base64.b64decode(v) for v in value}
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


def _decode_cursor(cursor: str | None, partition_key: str, partition: str) -> dict[str, Any] | None:
    """The start key a cursor stands for; InvalidCursor unless a page of this very partition gave it."""
    if not cursor:
        return None
    try:
        start = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ok = isinstance(start, dict) and start.get(partition_key, {}).get("S") == partition
    except (ValueError, binascii.Error, AttributeError):
        ok = False
    if not ok:
        raise errors.InvalidCursor()
    return start


# ---- the client ------------------------------------------------------------------


@functools.cache
def dynamodb_client(endpoint_url: str | None = None, region: str = "us-east-1", max_pool: int = 64) -> Any:
    """A botocore DynamoDB client for these settings, with standard retries (backoff with jitter).

    Only for the botocore path (an HTTP proxy is configured); built once per process: a client
    loads botocore's service model and holds a connection pool, and one client is safe to share
    between threads.
    """
    import botocore.session
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": wire.MAX_ATTEMPTS},
        connect_timeout=wire.CONNECT_TIMEOUT,
        read_timeout=wire.READ_TIMEOUT,
        max_pool_connections=max_pool,
    )
    # botocore itself: boto3 would add nothing here but its import time.
    return botocore.session.get_session().create_client(
        "dynamodb", endpoint_url=endpoint_url, region_name=region, config=config
    )


_METHODS = {"GetItem": "get_item", "UpdateItem": "update_item", "TransactWriteItems": "transact_write_items",
            "Query": "query", "BatchWriteItem": "batch_write_item"}


class BotocoreWire:
    """The operations through a botocore client, each in a worker thread (bounded by a capacity limiter)."""

    def __init__(self, client: Any, max_threads: int = 64) -> None:
        self.client = client
        self._limiter = anyio.CapacityLimiter(max_threads)

    async def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(self.client, _METHODS[operation])

        def run() -> dict[str, Any]:
            try:
                return method(**request)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                raise wire.error_for(error.get("Code", ""), error.get("Message", ""),
                                     exc.response.get("CancellationReasons")) from exc
            except BotoCoreError as exc:
                raise errors.StorageError(f"DynamoDB {type(exc).__name__}") from exc

        # The worker thread is not abandoned on cancellation: a write that started finishes.
        return await anyio.to_thread.run_sync(run, limiter=self._limiter)


class Table:
    """One DynamoDB table; every call the app makes to DynamoDB goes through here."""

    def __init__(
        self,
        name: str,
        *,
        client: Any | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        max_threads: int = 64,
    ) -> None:
        """``max_threads``: DynamoDB requests in flight at once (connections, or worker threads on the
        botocore path). An injected botocore ``client`` wins; a configured HTTP proxy also takes the
        botocore path (``wire.py`` speaks to DynamoDB directly)."""
        self.name = name
        self.wire: wire.DynamoDBHTTP | BotocoreWire
        if client is not None or wire.proxy_configured():
            self.wire = BotocoreWire(client or dynamodb_client(endpoint_url, region, max_threads), max_threads)
        else:
            self.wire = wire.DynamoDBHTTP(region=region, endpoint_url=endpoint_url, max_connections=max_threads)

    @property
    def client(self) -> Any | None:
        """The botocore client of the botocore path (None on the direct path)."""
        return self.wire.client if isinstance(self.wire, BotocoreWire) else None

    async def _call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        return await self.wire.call(operation, request)

    async def get(self, key: Key, *, consistent: bool = True, projection: str | None = None) -> Item | None:
        """The item at ``key`` (only the ``projection`` attributes, if given), or None."""
        extra = {"ProjectionExpression": projection} if projection else {}
        response = await self._call(
            "GetItem", {"TableName": self.name, "Key": serialize(key), "ConsistentRead": consistent, **extra}
        )
        item = response.get("Item")
        return deserialize(item) if item is not None else None

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
        response = await self._call("UpdateItem", request)
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
        await self._call("TransactWriteItems", {"TransactItems": list(operations)})

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
        response = await self._call("Query", request)
        return [deserialize(raw) for raw in response.get("Items", [])], response.get("LastEvaluatedKey")

    # ---- deletes ----------------------------------------------------------------

    async def batch_delete(self, keys: Sequence[Key]) -> None:
        """Delete the items at ``keys``, in batches taken in order; unprocessed deletes are retried."""
        for offset in range(0, len(keys), _BATCH_WRITE_LIMIT):
            await self._delete_batch(keys[offset : offset + _BATCH_WRITE_LIMIT])

    async def _delete_batch(self, keys: Sequence[Key]) -> None:
        requests = {self.name: [{"DeleteRequest": {"Key": serialize(key)}} for key in keys]}
        for attempt in range(8):
            response = await self._call("BatchWriteItem", {"RequestItems": requests})
            requests = response.get("UnprocessedItems") or {}
            if not requests:
                return
            await anyio.sleep(min(0.05 * 2**attempt, 1.0))
        raise errors.StorageError("could not delete every item")
