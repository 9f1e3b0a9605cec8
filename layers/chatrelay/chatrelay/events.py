"""The event vocabulary of a turn: what the relay and the follower yield, and how a turn ended.

Wire formats (``streaming/response.py`` for SSE, the OpenAI and AI SDK encoders) map
these to bytes; nothing here knows HTTP. Offsets are characters (code points) of
the answer, as in the ``id:`` lines of the SSE stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from chatrelay import errors
from chatrelay.store.records import TurnStatus


class MetaEvent(msgspec.Struct, frozen=True):
    conversation_id: str
    message_id: str
    model: str


class DeltaEvent(msgspec.Struct, frozen=True):
    text: str
    offset: int
    """Characters (code points) of the answer so far, this delta included."""


class ReasoningEvent(msgspec.Struct, frozen=True):
    text: str


class ErrorEvent(msgspec.Struct, frozen=True):
    code: str
    message: str
    offset: int | None = None
    """For ``answer_blocked``: the answer's safe length; the client drops the text after it."""

    @classmethod
    def stream_only(cls, code: str, offset: int | None = None) -> ErrorEvent:
        """An error of a code that exists only in streams, with its one message (``errors.STREAM_ERRORS``)."""
        return cls(code, errors.STREAM_ERRORS[code], offset)


class DoneEvent(msgspec.Struct, frozen=True):
    finish_reason: str
    usage: dict[str, int] | None = None


RelayEvent = MetaEvent | DeltaEvent | ReasoningEvent | ErrorEvent | DoneEvent


class TurnOutcome(msgspec.Struct, frozen=True):
    """How a turn ended; handed to ``on_end`` hooks (quota accounting, for one)."""

    user_id: str
    message_id: str
    status: TurnStatus
    usage: dict[str, int] | None
    answer_chars: int
    saved: bool


OnEnd = Callable[[TurnOutcome], Awaitable[None]]
