"""The chat store's interface, and the rules every back end of it follows.

``TurnStore`` is what the relay, the follower and the routes depend on.
``TurnStoreBase`` owns the flow, the way Powertools' idempotency persistence layer
does (a base class with the logic, a DynamoDB back end with the items): a new
conversation's title, a retried turn answered from the store, a turn whose stream
vanished settled when it is read, and what counts as "not found" are decided here,
once. A back end (``store/dynamodb.py``) maps records to items and makes each write
atomic and conditional.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import UTC, datetime
from enum import Enum
from typing import Protocol

import msgspec

from chatrelay import errors
from chatrelay.store.records import Conversation, Page, Turn, TurnStart, TurnStatus, parse_timestamp, utc_now

TITLE_CHARS = 60
"""A new conversation is titled with the first characters of its first question."""

INTERRUPTED = "interrupted"
"""Finish reason and error code of a turn whose stream vanished (a crashed instance)."""


class TurnStore(Protocol):
    """Conversations and turns of every user, addressed by the caller's user id."""

    async def start_turn(
        self, user_id: str, conversation_id: str | None, turn: Turn, *, max_turns: int = 0
    ) -> TurnStart:
        """Store a new turn as ``streaming`` and create (no ``conversation_id``) or touch its conversation, atomically.

        Raises ConversationNotFound when ``conversation_id`` is not one of the user's, and
        ConversationTooLong when it already holds ``max_turns`` turns (0: no cap) — checked in
        the same conditional write, so concurrent turns cannot overshoot the cap.
        When the turn's message id already exists (a retried ``requestId``) nothing
        is written and the stored turn comes back with ``duplicate=True``.
        """
        ...

    async def stop_request(self, user_id: str, message_id: str, request_id: str) -> Turn:
        """Stop the turn a request id names, whether or not it has started.

        A turn not yet stored is stored at once as ``stopped`` (empty, in no conversation, kept a
        day): the request, when it arrives, finds it taken and replays that ending, so the model
        is never asked.
        """
        ...

    async def finish_turn(self, user_id: str, message_id: str, *, status: TurnStatus, answer: str, reasoning: str = "",
                          finish_reason: str | None = None, error_code: str | None = None,
                          usage: dict[str, int] | None = None, ttft_ms: int | None = None,
                          provider: str | None = None) -> bool:
        """Write the turn's ending. Returns False if it had already ended."""
        ...

    async def checkpoint_turn(self, user_id: str, message_id: str, *, answer: str, reasoning: str = "") -> bool:
        """Save the partial answer of a running turn (also its heartbeat).

        Returns False when the turn is no longer ``streaming`` or a stop was requested:
        one conditional write both checkpoints and tells the stream whether to go on.
        """
        ...

    async def get_turn(self, user_id: str, message_id: str) -> Turn | None:
        """The turn, or None; one whose stream vanished is settled as ``failed`` first."""
        ...

    async def stop_requested(self, user_id: str, message_id: str) -> bool: ...

    async def request_stop(self, user_id: str, message_id: str) -> Turn:
        """Flag a turn for stopping; the stream that owns it notices within a poll interval.

        Raises MessageNotFound for a message that is not the user's.
        """
        ...

    async def set_feedback(self, user_id: str, message_id: str, useful: int) -> Turn:
        """Rate the answer (1, 0 or -1). Raises MessageNotFound for a message that is not the user's."""
        ...

    async def get_conversation(self, user_id: str, conversation_id: str) -> Conversation | None: ...

    async def list_conversations(self, user_id: str, *, limit: int = 20, cursor: str | None = None) -> Page:
        """The user's conversations, newest activity first. Raises InvalidCursor for a cursor from elsewhere."""
        ...

    async def list_turns(self, user_id: str, conversation_id: str, *, limit: int = 50,
                         cursor: str | None = None) -> Page:
        """A conversation's turns, oldest first, stale ones settled.

        Raises ConversationNotFound, or InvalidCursor for a cursor from elsewhere.
        """
        ...

    async def recent_turns(self, user_id: str, conversation_id: str, limit: int) -> list[Turn]:
        """The conversation's last ``limit`` turns, oldest first (context for the model)."""
        ...

    async def delete_conversation(self, user_id: str, conversation_id: str) -> int:
        """Delete a conversation and all its turns. Returns the number of turns removed.

        Raises ConversationNotFound.
        """
        ...

    async def delete_user_data(self, user_id: str) -> int:
        """Delete every item of the user: conversations, turns, refresh tokens, quota counters.

        Returns the number of items removed. A call that failed half-way can simply be repeated.
        """
        ...


class StartConflict(Enum):
    """Why a back end wrote nothing when starting a turn."""

    TURN_EXISTS = "turn_exists"
    """The message id is taken: a retried requestId."""
    NO_CONVERSATION = "no_conversation"
    """The conversation to add the turn to is not the user's, or already holds the most turns."""


class TurnEnding(msgspec.Struct, frozen=True):
    """A turn's ending as a back end writes it; a field left None is not written."""

    status: TurnStatus
    finished_at: str
    answer: str | None = None
    reasoning: str | None = None
    finish_reason: str | None = None
    error_code: str | None = None
    usage: dict[str, int] | None = None
    ttft_ms: int | None = None
    provider: str | None = None


def _found(turn: Turn | None) -> Turn:
    if turn is None:
        raise errors.MessageNotFound()
    return turn


class TurnStoreBase(TurnStore, ABC):
    """A ``TurnStore`` whose back end implements the abstract methods below."""

    def __init__(self, *, stale_after_seconds: float = 120.0) -> None:
        self.stale_after_seconds = stale_after_seconds

    async def start_turn(
        self, user_id: str, conversation_id: str | None, turn: Turn, *, max_turns: int = 0
    ) -> TurnStart:
        conversation = None
        if conversation_id is None:
            now = turn.created_at
            conversation = Conversation(turn.conversation_id, turn.question[:TITLE_CHARS], now, now, 1, turn.model)
        conflicts = await self._write_start(user_id, turn, conversation, max_turns=max_turns)
        if not conflicts:
            return TurnStart(turn, conversation)
        if StartConflict.TURN_EXISTS in conflicts:
            existing = await self.get_turn(user_id, turn.message_id)
            if existing is not None:
                return TurnStart(existing, None, duplicate=True)
        if StartConflict.NO_CONVERSATION in conflicts:
            if max_turns and await self.get_conversation(user_id, turn.conversation_id) is not None:
                raise errors.ConversationTooLong(f"a conversation holds at most {max_turns} turns; start a new one")
            raise errors.ConversationNotFound()
        raise errors.StorageError("could not start the turn")

    async def stop_request(self, user_id: str, message_id: str, request_id: str) -> Turn:
        turn = await self._flag_stop(user_id, message_id)
        if turn is None:
            turn = await self._put_stopped(user_id, message_id, request_id)
        if turn is None:  # the request's own turn was stored meanwhile
            turn = await self._flag_stop(user_id, message_id)
        return _found(turn)

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
        ending = TurnEnding(status, utc_now(), answer=answer, reasoning=reasoning or None, finish_reason=finish_reason,
                            error_code=error_code, usage=usage, ttft_ms=ttft_ms, provider=provider)
        return await self._end_turn(user_id, message_id, ending)

    async def get_turn(self, user_id: str, message_id: str) -> Turn | None:
        turn = await self._read_turn(user_id, message_id)
        return None if turn is None else await self._settle_if_stale(user_id, turn)

    async def request_stop(self, user_id: str, message_id: str) -> Turn:
        return _found(await self._flag_stop(user_id, message_id))

    async def set_feedback(self, user_id: str, message_id: str, useful: int) -> Turn:
        return _found(await self._set_useful(user_id, message_id, useful))

    async def list_turns(
        self, user_id: str, conversation_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        await self._require_conversation(user_id, conversation_id)
        page = await self._turns_page(user_id, conversation_id, limit=limit, cursor=cursor, newest_first=False)
        page.items = [await self._settle_if_stale(user_id, turn) for turn in page.items]
        return page

    async def recent_turns(self, user_id: str, conversation_id: str, limit: int) -> list[Turn]:
        if limit <= 0:
            return []
        page = await self._turns_page(user_id, conversation_id, limit=limit, cursor=None, newest_first=True)
        return list(reversed(page.items))

    async def delete_conversation(self, user_id: str, conversation_id: str) -> int:
        await self._require_conversation(user_id, conversation_id)
        return await self._delete_conversation(user_id, conversation_id)

    async def _require_conversation(self, user_id: str, conversation_id: str) -> None:
        if await self.get_conversation(user_id, conversation_id) is None:
            raise errors.ConversationNotFound()

    async def _settle_if_stale(self, user_id: str, turn: Turn) -> Turn:
        """A turn left ``streaming`` by a crashed instance ends as ``failed`` once read.

        A live stream writes a checkpoint or heartbeat at least every few seconds;
        a turn silent for ``stale_after_seconds`` has lost its stream. The ending is
        conditioned on the heartbeat we saw, so a live stream is never overruled.
        """
        if turn.status is not TurnStatus.STREAMING or not turn.beat_at:
            return turn
        if (datetime.now(UTC) - parse_timestamp(turn.beat_at)).total_seconds() < self.stale_after_seconds:
            return turn
        ending = TurnEnding(TurnStatus.FAILED, utc_now(), finish_reason=INTERRUPTED, error_code=INTERRUPTED)
        if not await self._end_turn(user_id, turn.message_id, ending, beat_at=turn.beat_at):
            # It moved on meanwhile (a heartbeat, or another reader settled it): read what it is now.
            return await self.get_turn(user_id, turn.message_id) or turn
        turn.status, turn.finished_at = ending.status, ending.finished_at
        turn.finish_reason, turn.error_code = ending.finish_reason, ending.error_code
        return turn

    # ---- what a back end provides ------------------------------------------------

    @abstractmethod
    async def _write_start(
        self, user_id: str, turn: Turn, conversation: Conversation | None, *, max_turns: int = 0
    ) -> set[StartConflict]:
        """Write the ``streaming`` turn and create ``conversation`` (None: add a turn to the turn's
        conversation, which must exist and hold fewer than ``max_turns`` turns when that is set),
        all or nothing; the conflicts that stopped it, if any."""

    @abstractmethod
    async def _put_stopped(self, user_id: str, message_id: str, request_id: str) -> Turn | None:
        """Store an empty ``stopped`` turn under ``message_id`` unless one exists (then None)."""

    @abstractmethod
    async def _read_turn(self, user_id: str, message_id: str) -> Turn | None:
        """The turn as stored (a consistent read)."""

    @abstractmethod
    async def _end_turn(self, user_id: str, message_id: str, ending: TurnEnding, *, beat_at: str | None = None) -> bool:
        """Write ``ending`` if the turn is still ``streaming`` (and its heartbeat is still ``beat_at``, if given)."""

    @abstractmethod
    async def _flag_stop(self, user_id: str, message_id: str) -> Turn | None:
        """Set the turn's stop flag; None when there is no such turn."""

    @abstractmethod
    async def _set_useful(self, user_id: str, message_id: str, useful: int) -> Turn | None:
        """Set the turn's rating; None when there is no such turn."""

    @abstractmethod
    async def _turns_page(
        self, user_id: str, conversation_id: str, *, limit: int, cursor: str | None, newest_first: bool
    ) -> Page:
        """One page of the conversation's turns in time order (newest first, if asked)."""

    @abstractmethod
    async def _delete_conversation(self, user_id: str, conversation_id: str) -> int:
        """Delete the conversation's turns, then the conversation; the number of turns removed."""

    @abstractmethod
    async def checkpoint_turn(self, user_id: str, message_id: str, *, answer: str, reasoning: str = "") -> bool: ...

    @abstractmethod
    async def stop_requested(self, user_id: str, message_id: str) -> bool: ...

    @abstractmethod
    async def get_conversation(self, user_id: str, conversation_id: str) -> Conversation | None: ...

    @abstractmethod
    async def list_conversations(self, user_id: str, *, limit: int = 20, cursor: str | None = None) -> Page: ...

    @abstractmethod
    async def delete_user_data(self, user_id: str) -> int: ...
