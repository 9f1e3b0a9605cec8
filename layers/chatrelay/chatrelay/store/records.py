"""What the store keeps: conversations and turns, as plain dataclasses, and their timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import msgspec

_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def utc_now() -> str:
    """Now, as records keep time: ISO 8601 UTC to the millisecond, so timestamps sort as text."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_timestamp(stamp: str) -> datetime:
    """A record's timestamp (from ``utc_now``) as an aware datetime."""
    return datetime.strptime(stamp, _TIMESTAMP).replace(tzinfo=UTC)


class TurnStatus(str, Enum):
    STREAMING = "streaming"
    COMPLETE = "complete"
    STOPPED = "stopped"
    FAILED = "failed"
    TRUNCATED = "truncated"
    """Ended by a hard cap (answer length or duration); the partial answer is kept."""
    BLOCKED = "blocked"
    """Refused by the content check: the question (never sent to the model) or part of the answer."""


class Conversation(msgspec.Struct):
    conversation_id: str
    title: str
    created_at: str
    updated_at: str
    turn_count: int
    model: str

    def to_api(self) -> dict[str, Any]:
        return {
            "conversationId": self.conversation_id,
            "title": self.title,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "turnCount": self.turn_count,
            "model": self.model,
        }


class Turn(msgspec.Struct):
    message_id: str
    conversation_id: str
    question: str
    model: str
    created_at: str
    status: TurnStatus = TurnStatus.STREAMING
    answer: str = ""
    reasoning: str = ""
    finished_at: str | None = None
    finish_reason: str | None = None
    error_code: str | None = None
    usage: dict[str, int] | None = None
    ttft_ms: int | None = None
    useful: int = 0
    terminal: str | None = None
    window: str | None = None
    request_id: str | None = None
    provider: str | None = None
    stop_requested: bool = False
    beat_at: str | None = None
    """Last checkpoint or heartbeat of the stream generating this turn."""
    answer_chars: int = 0

    def to_api(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "conversationId": self.conversation_id,
            "question": self.question,
            "answer": self.answer,
            "reasoning": self.reasoning or None,
            "status": self.status.value,
            "model": self.model,
            "createTime": self.created_at,
            "finishTime": self.finished_at,
            "finishReason": self.finish_reason,
            "errorCode": self.error_code,
            "usage": self.usage,
            "ttftMs": self.ttft_ms,
            "useful": self.useful,
            "terminal": self.terminal,
            "window": self.window,
            "requestId": self.request_id,
            "provider": self.provider,
        }


class Page(msgspec.Struct):
    items: list[Any] = msgspec.field(default_factory=list)
    next_cursor: str | None = None


class TurnStart(msgspec.Struct):
    """The outcome of starting a turn: a fresh one, or the turn a retried requestId already made."""

    turn: Turn
    conversation: Conversation | None
    duplicate: bool = False
