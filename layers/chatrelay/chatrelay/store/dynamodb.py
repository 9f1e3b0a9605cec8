"""Chat records in one DynamoDB table (single-table design).

    item           pk          sk            gsi1pk                 gsi1sk
    conversation   USER#<uid>  CONV#<cid>    USER#<uid>#CONVS       <updatedAt>#<cid>
    turn           USER#<uid>  MSG#<mid>     USER#<uid>#CONV#<cid>  <createdAt>#<mid>

Every key starts with the caller's user id, which comes from the verified token
only, so a read or write for someone else's id finds nothing (404, never 403).
Turns are addressed by ``(user, messageId)`` with strongly consistent reads (stop,
feedback); listings go through ``gsi1``: conversations newest first, a
conversation's turns oldest first. One item per turn keeps every item far below
DynamoDB's 400 KB limit.

Writes per turn: one ``TransactWriteItems`` at the start (put the turn with
status ``streaming`` + create or touch the conversation: 2 item writes, billed
as 4 WCU) and one ``UpdateItem`` when it ends, whatever the ending; never a
write per token. A running stream also reads its turn once per
``stop_poll_interval`` (a consistent ``GetItem`` of one small attribute: 1 RCU).

boto3 is blocking: every call runs in a worker thread (bounded by a limiter),
so the event loop that relays tokens never waits on DynamoDB.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import anyio
import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chatrelay import errors
from chatrelay.store.records import Conversation, Page, Turn, TurnStart, TurnStatus, parse_timestamp, utc_now

T = TypeVar("T")

GSI1 = "gsi1"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def make_client(endpoint_url: str | None = None, region: str = "us-east-1", max_pool: int = 64) -> Any:
    """A DynamoDB client with standard retries (exponential backoff with jitter)."""
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=3,
        read_timeout=10,
        max_pool_connections=max_pool,
    )
    return boto3.session.Session().client(
        "dynamodb", endpoint_url=endpoint_url, region_name=region, config=config
    )


def _user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


def _serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in item.items() if v is not None}


def _deserialize(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in raw.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _turn_from_item(item: dict[str, Any]) -> Turn:
    return Turn(
        message_id=item["messageId"],
        conversation_id=item["conversationId"],
        question=item.get("question", ""),
        model=item.get("model", ""),
        created_at=item["createTime"],
        status=TurnStatus(item.get("status", "streaming")),
        answer=item.get("answer", ""),
        reasoning=item.get("reasoning", ""),
        finished_at=item.get("finishTime"),
        finish_reason=item.get("finishReason"),
        error_code=item.get("errorCode"),
        usage=item.get("usage"),
        ttft_ms=item.get("ttftMs"),
        useful=item.get("useful", 0),
        terminal=item.get("terminal"),
        window=item.get("window"),
        request_id=item.get("requestId"),
        provider=item.get("provider"),
        stop_requested=bool(item.get("stopRequested", False)),
        beat_at=item.get("beatAt"),
    )


def _conversation_from_item(item: dict[str, Any]) -> Conversation:
    return Conversation(
        conversation_id=item["conversationId"],
        title=item.get("title", ""),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
        turn_count=item.get("turnCount", 0),
        model=item.get("model", ""),
    )


def _encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, expected_gsi1pk: str) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ok = isinstance(key, dict) and key.get("gsi1pk", {}).get("S") == expected_gsi1pk
    except (ValueError, binascii.Error, AttributeError):
        ok = False
    if not ok:
        raise errors.InvalidRequest("cursor is not valid for this listing", field="cursor")
    return key


class DynamoDBChatStore:
    """Conversations and turns of every user, in one table."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any | None = None,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        retention_days: int = 0,
        max_threads: int = 64,
        stale_after_seconds: float = 120.0,
    ) -> None:
        self.table_name = table_name
        # An injected client wins; otherwise build one, once per process.
        self._client = client or make_client(endpoint_url, region, max_pool=max_threads)
        self._retention_seconds = retention_days * 86400
        self._limiter = anyio.CapacityLimiter(max_threads)
        self._stale_after = stale_after_seconds

    @property
    def client(self) -> Any:
        return self._client

    async def _call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        def run() -> T:
            try:
                return fn(**kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                    raise
                if code == "ValidationException":
                    raise errors.InvalidRequest(exc.response["Error"].get("Message", "invalid")) from exc
                raise errors.StorageError(f"DynamoDB {code}") from exc
            except BotoCoreError as exc:
                raise errors.StorageError(f"DynamoDB {type(exc).__name__}") from exc

        # The worker thread is not abandoned on cancellation: a write that started finishes.
        return await anyio.to_thread.run_sync(run, limiter=self._limiter)

    def _expiry(self) -> int | None:
        return int(time.time()) + self._retention_seconds if self._retention_seconds else None

    # ---- turns -------------------------------------------------------------

    async def start_turn(self, user_id: str, conversation_id: str | None, turn: Turn) -> TurnStart:
        """Store a new turn as ``streaming`` and create or touch its conversation, atomically.

        Raises NotFound when ``conversation_id`` is not one of the user's. When the
        turn's message id already exists (a retried ``requestId``) nothing is written
        and the existing turn comes back with ``duplicate=True``.
        """
        pk = _user_pk(user_id)
        now = turn.created_at
        expires = self._expiry()
        turn_item = {
            "pk": pk,
            "sk": f"MSG#{turn.message_id}",
            "gsi1pk": f"{pk}#CONV#{turn.conversation_id}",
            "gsi1sk": f"{now}#{turn.message_id}",
            "type": "turn",
            "messageId": turn.message_id,
            "conversationId": turn.conversation_id,
            "question": turn.question,
            "answer": "",
            "status": TurnStatus.STREAMING.value,
            "model": turn.model,
            "provider": turn.provider,
            "createTime": now,
            "beatAt": now,
            "useful": 0,
            "terminal": turn.terminal,
            "window": turn.window,
            "requestId": turn.request_id,
            "expiresAt": expires,
        }
        conv_key = {"pk": pk, "sk": f"CONV#{turn.conversation_id}"}
        if conversation_id is None:
            conversation = Conversation(turn.conversation_id, turn.question[:60], now, now, 1, turn.model)
            conv_op: dict[str, Any] = {
                "Put": {
                    "TableName": self.table_name,
                    "Item": _serialize(
                        {
                            **conv_key,
                            "gsi1pk": f"{pk}#CONVS",
                            "gsi1sk": f"{now}#{turn.conversation_id}",
                            "type": "conversation",
                            "conversationId": turn.conversation_id,
                            "title": conversation.title,
                            "createdAt": now,
                            "updatedAt": now,
                            "turnCount": 1,
                            "model": turn.model,
                            "expiresAt": expires,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        else:
            conversation = None
            values = {":now": now, ":g": f"{now}#{turn.conversation_id}", ":one": 1, ":m": turn.model}
            set_expr = "SET updatedAt = :now, gsi1sk = :g, model = :m"
            if expires:
                values[":exp"] = expires
                set_expr += ", expiresAt = :exp"
            conv_op = {
                "Update": {
                    "TableName": self.table_name,
                    "Key": _serialize(conv_key),
                    "UpdateExpression": set_expr + " ADD turnCount :one",
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeValues": _serialize(values),
                }
            }
        turn_op = {
            "Put": {
                "TableName": self.table_name,
                "Item": _serialize(turn_item),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        try:
            await self._call(self._client.transact_write_items, TransactItems=[turn_op, conv_op])
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                existing = await self.get_turn(user_id, turn.message_id)
                if existing is not None:
                    return TurnStart(existing, None, duplicate=True)
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                raise errors.NotFound("conversation not found", field="conversationId") from exc
            raise errors.StorageError("could not start the turn") from exc
        return TurnStart(turn, conversation)

    async def finish_turn(
        self,
        user_id: str,
        message_id: str,
        *,
        status: TurnStatus,
        answer: str,
        reasoning: str = "",
        finish_reason: str | None = None,
        error_code: str | None = None,
        usage: dict[str, int] | None = None,
        ttft_ms: int | None = None,
        provider: str | None = None,
    ) -> bool:
        """Write the turn's ending. Returns False if it had already ended."""
        fields: dict[str, Any] = {
            "status": status.value,
            "answer": answer,
            "finishTime": utc_now(),
            "finishReason": finish_reason,
            "errorCode": error_code,
            "usage": usage,
            "ttftMs": ttft_ms,
            "reasoning": reasoning or None,
            "provider": provider,
        }
        present = {k: v for k, v in fields.items() if v is not None}
        names = {f"#{k}": k for k in present}
        values = {f":{k}": v for k, v in present.items()}
        values[":streaming"] = TurnStatus.STREAMING.value
        try:
            await self._call(
                self._client.update_item,
                TableName=self.table_name,
                Key=_serialize({"pk": _user_pk(user_id), "sk": f"MSG#{message_id}"}),
                UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in present),
                ConditionExpression="#status = :streaming",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_serialize(values),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise errors.StorageError("could not finish the turn") from exc
        return True

    async def get_turn(self, user_id: str, message_id: str) -> Turn | None:
        response = await self._call(
            self._client.get_item,
            TableName=self.table_name,
            Key=_serialize({"pk": _user_pk(user_id), "sk": f"MSG#{message_id}"}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return None
        return await self._settle_if_stale(user_id, _turn_from_item(_deserialize(item)))

    async def checkpoint_turn(self, user_id: str, message_id: str, *, answer: str, reasoning: str = "") -> bool:
        """Save the partial answer of a running turn (also its heartbeat).

        Returns False when the turn is no longer ``streaming`` or a stop was requested:
        one conditional write both checkpoints and tells the stream whether to go on.
        """
        values: dict[str, Any] = {":a": answer, ":now": utc_now(), ":n": len(answer), ":streaming": "streaming"}
        expr = "SET answer = :a, beatAt = :now, answerChars = :n"
        if reasoning:
            values[":r"] = reasoning
            expr += ", reasoning = :r"
        try:
            await self._call(
                self._client.update_item,
                TableName=self.table_name,
                Key=_serialize({"pk": _user_pk(user_id), "sk": f"MSG#{message_id}"}),
                UpdateExpression=expr,
                ConditionExpression="#status = :streaming AND attribute_not_exists(stopRequested)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_serialize(values),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise errors.StorageError("could not checkpoint the turn") from exc
        return True

    async def _settle_if_stale(self, user_id: str, turn: Turn) -> Turn:
        """A turn left ``streaming`` by a crashed instance ends as ``failed`` once read.

        A live stream writes a checkpoint or heartbeat at least every few seconds;
        a turn silent for ``stale_after`` seconds has lost its stream. The update is
        conditioned on the heartbeat we saw, so a live stream is never overruled.
        """
        if turn.status is not TurnStatus.STREAMING or not turn.beat_at:
            return turn
        if (datetime.now(UTC) - parse_timestamp(turn.beat_at)).total_seconds() < self._stale_after:
            return turn
        now = utc_now()
        try:
            await self._call(
                self._client.update_item,
                TableName=self.table_name,
                Key=_serialize({"pk": _user_pk(user_id), "sk": f"MSG#{turn.message_id}"}),
                UpdateExpression="SET #status = :failed, finishTime = :now, finishReason = :r, errorCode = :c",
                ConditionExpression="#status = :streaming AND beatAt = :beat",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=_serialize(
                    {":failed": "failed", ":now": now, ":r": "interrupted", ":c": "interrupted",
                     ":streaming": "streaming", ":beat": turn.beat_at}
                ),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise errors.StorageError("could not settle the turn") from exc
            refreshed = await self.get_turn(user_id, turn.message_id)
            return refreshed or turn
        turn.status, turn.finished_at, turn.finish_reason, turn.error_code = (
            TurnStatus.FAILED, now, "interrupted", "interrupted")
        return turn

    async def stop_requested(self, user_id: str, message_id: str) -> bool:
        response = await self._call(
            self._client.get_item,
            TableName=self.table_name,
            Key=_serialize({"pk": _user_pk(user_id), "sk": f"MSG#{message_id}"}),
            ProjectionExpression="stopRequested",
            ConsistentRead=True,
        )
        return bool(_deserialize(response.get("Item", {})).get("stopRequested", False))

    async def request_stop(self, user_id: str, message_id: str) -> Turn:
        """Flag a turn for stopping; the stream that owns it notices within a poll interval."""
        try:
            response = await self._call(
                self._client.update_item,
                TableName=self.table_name,
                Key=_serialize({"pk": _user_pk(user_id), "sk": f"MSG#{message_id}"}),
                UpdateExpression="SET stopRequested = :t",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=_serialize({":t": True}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            raise errors.NotFound("message not found") from exc
        return _turn_from_item(_deserialize(response["Attributes"]))

    async def set_feedback(self, user_id: str, message_id: str, useful: int) -> Turn:
        try:
            response = await self._call(
                self._client.update_item,
                TableName=self.table_name,
                Key=_serialize({"pk": _user_pk(user_id), "sk": f"MSG#{message_id}"}),
                UpdateExpression="SET useful = :u",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=_serialize({":u": useful}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            raise errors.NotFound("message not found") from exc
        return _turn_from_item(_deserialize(response["Attributes"]))

    # ---- conversations -----------------------------------------------------

    async def get_conversation(self, user_id: str, conversation_id: str) -> Conversation | None:
        response = await self._call(
            self._client.get_item,
            TableName=self.table_name,
            Key=_serialize({"pk": _user_pk(user_id), "sk": f"CONV#{conversation_id}"}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _conversation_from_item(_deserialize(item)) if item else None

    async def list_conversations(self, user_id: str, *, limit: int = 20, cursor: str | None = None) -> Page:
        gsi1pk = f"{_user_pk(user_id)}#CONVS"
        return await self._query_page(gsi1pk, limit, cursor, newest_first=True, parse=_conversation_from_item)

    async def list_turns(
        self, user_id: str, conversation_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        if await self.get_conversation(user_id, conversation_id) is None:
            raise errors.NotFound("conversation not found")
        gsi1pk = f"{_user_pk(user_id)}#CONV#{conversation_id}"
        page = await self._query_page(gsi1pk, limit, cursor, newest_first=False, parse=_turn_from_item)
        page.items = [await self._settle_if_stale(user_id, turn) for turn in page.items]
        return page

    async def recent_turns(self, user_id: str, conversation_id: str, limit: int) -> list[Turn]:
        """The conversation's last ``limit`` turns, oldest first (context for the model)."""
        if limit <= 0:
            return []
        page = await self._query_page(
            f"{_user_pk(user_id)}#CONV#{conversation_id}", limit, None, newest_first=True, parse=_turn_from_item
        )
        return list(reversed(page.items))

    async def _query_page(
        self, gsi1pk: str, limit: int, cursor: str | None, *, newest_first: bool, parse: Callable[[dict], Any]
    ) -> Page:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": GSI1,
            "KeyConditionExpression": "gsi1pk = :pk",
            "ExpressionAttributeValues": _serialize({":pk": gsi1pk}),
            "ScanIndexForward": not newest_first,
            "Limit": limit,
        }
        start = _decode_cursor(cursor, gsi1pk)
        if start:
            kwargs["ExclusiveStartKey"] = start
        response = await self._call(self._client.query, **kwargs)
        items = [parse(_deserialize(raw)) for raw in response.get("Items", [])]
        return Page(items, _encode_cursor(response.get("LastEvaluatedKey")))

    async def delete_conversation(self, user_id: str, conversation_id: str) -> int:
        """Delete a conversation and all its turns. Returns the number of turns removed."""
        if await self.get_conversation(user_id, conversation_id) is None:
            raise errors.NotFound("conversation not found")
        pk = _user_pk(user_id)
        gsi1pk = f"{pk}#CONV#{conversation_id}"
        keys: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": GSI1,
                "KeyConditionExpression": "gsi1pk = :pk",
                "ExpressionAttributeValues": _serialize({":pk": gsi1pk}),
                "ProjectionExpression": "pk, sk",
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            response = await self._call(self._client.query, **kwargs)
            keys.extend({"pk": i["pk"], "sk": i["sk"]} for i in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        # The conversation item goes last, so a failure half-way leaves it listable and retryable.
        for offset in range(0, len(keys), 25):
            await self._batch_delete(keys[offset : offset + 25])
        await self._batch_delete([_serialize({"pk": pk, "sk": f"CONV#{conversation_id}"})])
        return len(keys)

    async def _batch_delete(self, keys: list[dict[str, Any]]) -> None:
        requests = {self.table_name: [{"DeleteRequest": {"Key": k}} for k in keys]}
        for attempt in range(8):
            response = await self._call(self._client.batch_write_item, RequestItems=requests)
            requests = response.get("UnprocessedItems") or {}
            if not requests:
                return
            await anyio.sleep(min(0.05 * 2**attempt, 1.0))
        raise errors.StorageError("could not delete every item")

    # ---- all of a user's data ----------------------------------------------

    async def delete_user_data(self, user_id: str) -> int:
        """Delete every item under ``USER#<uid>``: conversations, turns, refresh tokens,
        quota counters. Returns the number of items removed.

        Conversations go last, so a failure half-way leaves them listed and the call
        can simply be repeated.
        """
        pk = _user_pk(user_id)
        keys: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self.table_name,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": _serialize({":pk": pk}),
                "ProjectionExpression": "pk, sk",
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            response = await self._call(self._client.query, **kwargs)
            keys.extend({"pk": i["pk"], "sk": i["sk"]} for i in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                break
        keys.sort(key=lambda k: k["sk"]["S"].startswith("CONV#"))
        for offset in range(0, len(keys), 25):
            await self._batch_delete(keys[offset : offset + 25])
        return len(keys)
