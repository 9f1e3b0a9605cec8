"""Turns and conversations in the chat table: the DynamoDB back end of ``TurnStoreBase``.

This module maps records to items (keys from ``store/table.py``) and makes each
write atomic and conditional; the rules (titles, retried turns, stale turns, "not
found") are the base class's. Turns are addressed by ``(user, messageId)`` with
strongly consistent reads (stop, feedback); listings go through ``gsi1``:
conversations newest first, a conversation's turns oldest first. One item per
turn keeps every item far below DynamoDB's 400 KB limit.

Writes per turn: one ``TransactWriteItems`` at the start (put the turn with
status ``streaming`` + create or touch the conversation: 2 item writes, billed
as 4 WCU) and one ``UpdateItem`` when it ends, whatever the ending; never a
write per token. A running stream also reads its turn once per
``stop_poll_interval`` (a consistent ``GetItem`` of one small attribute: 1 RCU).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chatrelay import errors
from chatrelay.store.base import StartConflict, TurnEnding, TurnStoreBase
from chatrelay.store.records import Conversation, Page, Turn, TurnStatus, utc_now
from chatrelay.store.table import (
    GSI1,
    Item,
    Table,
    conversation_key,
    conversations_index_pk,
    index_sk,
    is_conversation_key,
    turn_key,
    turns_index_pk,
    user_pk,
)

# The transaction that starts a turn: its items in order, and what a failed condition on each means.
_START_CONFLICTS = (StartConflict.TURN_EXISTS, StartConflict.NO_CONVERSATION)
STOPPED_BEFORE_START_TTL = 86400
"""Seconds a turn stopped before it started is kept: long enough for its request's retries."""


def _turn_from_item(item: Item) -> Turn:
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


def _conversation_from_item(item: Item) -> Conversation:
    return Conversation(
        conversation_id=item["conversationId"],
        title=item.get("title", ""),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
        turn_count=item.get("turnCount", 0),
        model=item.get("model", ""),
    )


def _records(page: Page, record: Callable[[Item], Any]) -> Page:
    return Page([record(item) for item in page.items], page.next_cursor)


class DynamoDBChatStore(TurnStoreBase):
    """Conversations and turns of every user, in the chat table."""

    def __init__(self, table: Table, *, retention_days: int = 0, stale_after_seconds: float = 120.0) -> None:
        super().__init__(stale_after_seconds=stale_after_seconds)
        self.table = table
        self._retention_seconds = retention_days * 86400

    def _expiry(self) -> int | None:
        return int(time.time()) + self._retention_seconds if self._retention_seconds else None

    # ---- turns ---------------------------------------------------------------------

    async def _write_start(
        self, user_id: str, turn: Turn, conversation: Conversation | None, *, max_turns: int = 0
    ) -> set[StartConflict]:
        now = turn.created_at
        expires = self._expiry()
        turn_item = {
            **turn_key(user_id, turn.message_id),
            "gsi1pk": turns_index_pk(user_id, turn.conversation_id),
            "gsi1sk": index_sk(now, turn.message_id),
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
        if conversation is not None:
            conversation_op = self.table.put_op(
                {
                    **conversation_key(user_id, conversation.conversation_id),
                    "gsi1pk": conversations_index_pk(user_id),
                    "gsi1sk": index_sk(conversation.updated_at, conversation.conversation_id),
                    "type": "conversation",
                    "conversationId": conversation.conversation_id,
                    "title": conversation.title,
                    "createdAt": conversation.created_at,
                    "updatedAt": conversation.updated_at,
                    "turnCount": conversation.turn_count,
                    "model": conversation.model,
                    "expiresAt": expires,
                },
                condition="attribute_not_exists(pk)",
            )
        else:
            values = {":now": now, ":g": index_sk(now, turn.conversation_id), ":one": 1, ":m": turn.model}
            expression = "SET updatedAt = :now, gsi1sk = :g, model = :m"
            if expires:
                values[":exp"] = expires
                expression += ", expiresAt = :exp"
            condition = "attribute_exists(pk)"
            if max_turns:
                values[":max"] = max_turns
                condition += " AND turnCount < :max"  # the cap in the same write: no overshoot
            conversation_op = self.table.update_op(
                conversation_key(user_id, turn.conversation_id),
                expression + " ADD turnCount :one",
                condition=condition,
                values=values,
            )
        turn_op = self.table.put_op(turn_item, condition="attribute_not_exists(pk)")
        try:
            await self.table.transact_write([turn_op, conversation_op])
        except errors.TransactionCanceled as exc:
            conflicts = {
                conflict for conflict, reason in zip(_START_CONFLICTS, exc.reasons, strict=False)
                if reason == "ConditionalCheckFailed"
            }
            if not conflicts:
                raise errors.StorageError("could not start the turn") from exc
            return conflicts
        return set()

    async def _put_stopped(self, user_id: str, message_id: str, request_id: str) -> Turn | None:
        now = utc_now()
        item = {
            **turn_key(user_id, message_id), "type": "turn", "messageId": message_id, "conversationId": "",
            "question": "", "answer": "", "status": TurnStatus.STOPPED.value, "finishReason": "stopped",
            "createTime": now, "finishTime": now, "beatAt": now, "useful": 0, "requestId": request_id,
            "stopRequested": True, "model": "", "expiresAt": int(time.time()) + STOPPED_BEFORE_START_TTL,
        }
        return _turn_from_item(item) if await self.table.put_if_absent(item) else None

    async def _read_turn(self, user_id: str, message_id: str) -> Turn | None:
        item = await self.table.get(turn_key(user_id, message_id))
        return _turn_from_item(item) if item else None

    async def _end_turn(self, user_id: str, message_id: str, ending: TurnEnding, *, beat_at: str | None = None) -> bool:
        fields: dict[str, Any] = {
            "status": ending.status.value,
            "answer": ending.answer,
            "finishTime": ending.finished_at,
            "finishReason": ending.finish_reason,
            "errorCode": ending.error_code,
            "usage": ending.usage,
            "ttftMs": ending.ttft_ms,
            "reasoning": ending.reasoning,
            "provider": ending.provider,
        }
        present = {name: value for name, value in fields.items() if value is not None}
        values = {f":{name}": value for name, value in present.items()}
        values[":streaming"] = TurnStatus.STREAMING.value
        condition = "#status = :streaming"
        if beat_at is not None:
            values[":beat"] = beat_at
            condition += " AND beatAt = :beat"
        return await self.table.conditional_update(
            turn_key(user_id, message_id),
            "SET " + ", ".join(f"#{name} = :{name}" for name in present),
            condition=condition,
            names={f"#{name}": name for name in present},
            values=values,
        )

    async def checkpoint_turn(self, user_id: str, message_id: str, *, answer: str, reasoning: str = "") -> bool:
        values: dict[str, Any] = {":a": answer, ":now": utc_now(), ":n": len(answer), ":streaming": "streaming"}
        expression = "SET answer = :a, beatAt = :now, answerChars = :n"
        if reasoning:
            values[":r"] = reasoning
            expression += ", reasoning = :r"
        return await self.table.conditional_update(
            turn_key(user_id, message_id),
            expression,
            condition="#status = :streaming AND attribute_not_exists(stopRequested)",
            names={"#status": "status"},
            values=values,
        )

    async def stop_requested(self, user_id: str, message_id: str) -> bool:
        item = await self.table.get(turn_key(user_id, message_id), projection="stopRequested")
        return bool((item or {}).get("stopRequested", False))

    async def _flag_stop(self, user_id: str, message_id: str) -> Turn | None:
        return await self._update_existing_turn(user_id, message_id, "SET stopRequested = :t", {":t": True})

    async def _set_useful(self, user_id: str, message_id: str, useful: int) -> Turn | None:
        return await self._update_existing_turn(user_id, message_id, "SET useful = :u", {":u": useful})

    async def _update_existing_turn(
        self, user_id: str, message_id: str, expression: str, values: dict[str, Any]
    ) -> Turn | None:
        try:
            item = await self.table.update(
                turn_key(user_id, message_id), expression, condition="attribute_exists(pk)", values=values,
                return_new=True,
            )
        except errors.ConditionFailed:
            return None
        return _turn_from_item(item) if item else None

    async def _turns_page(
        self, user_id: str, conversation_id: str, *, limit: int, cursor: str | None, newest_first: bool
    ) -> Page:
        page = await self.table.query(
            turns_index_pk(user_id, conversation_id), index=GSI1, limit=limit, cursor=cursor, newest_first=newest_first
        )
        return _records(page, _turn_from_item)

    # ---- conversations ---------------------------------------------------------------

    async def get_conversation(self, user_id: str, conversation_id: str) -> Conversation | None:
        item = await self.table.get(conversation_key(user_id, conversation_id))
        return _conversation_from_item(item) if item else None

    async def list_conversations(self, user_id: str, *, limit: int = 20, cursor: str | None = None) -> Page:
        page = await self.table.query(
            conversations_index_pk(user_id), index=GSI1, limit=limit, cursor=cursor, newest_first=True
        )
        return _records(page, _conversation_from_item)

    async def _delete_conversation(self, user_id: str, conversation_id: str) -> int:
        keys = await self.table.query_keys(turns_index_pk(user_id, conversation_id), index=GSI1)
        # The conversation item goes last, so a failure half-way leaves it listable and retryable.
        await self.table.batch_delete(keys)
        await self.table.batch_delete([conversation_key(user_id, conversation_id)])
        return len(keys)

    # ---- all of a user's data ------------------------------------------------------

    async def delete_user_data(self, user_id: str) -> int:
        keys = await self.table.query_keys(user_pk(user_id), consistent=True)
        # Conversations go last, so a failure half-way leaves them listed and the call can be repeated.
        keys.sort(key=is_conversation_key)
        await self.table.batch_delete(keys)
        return len(keys)
