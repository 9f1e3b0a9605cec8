"""What one process takes on at once: live answers, and streams following stored answers.

Admission control for overload: a process past its CPU capacity degrades by lagging every
stream and dropping requests, so past ``max_process_streams`` live answers a new question is
refused at once with 503 ``overloaded`` and ``Retry-After``, before any upstream call or
write (a load balancer, or the client, tries again). Followers (resume, a retried requestId)
poll the table for up to the answer's time limit, so they are capped per answer and per user.

These counts are this process's only (on Lambda one instance serves one stream anyway;
the per-user quotas in DynamoDB are the cross-instance limits). Every slot is given back
exactly once: when the answer ends, when its stream closes, or when it is garbage-collected
without ever having run (a response that was never sent).
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable

from chatrelay import errors
from chatrelay.events import RelayEvent, TurnOutcome


class Slot:
    __slots__ = ("_release", "__weakref__")

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    async def on_end(self, outcome: TurnOutcome) -> None:  # a TurnRelay on_end hook
        self.release()

    def tie_to(self, owner: object) -> None:
        """Give the slot back when ``owner`` is collected, whatever happened to it."""
        weakref.finalize(owner, self.release)


class StreamCapacity:
    def __init__(self, max_streams: int, *, retry_after: int = 2) -> None:
        self.max_streams = max_streams
        self.retry_after = retry_after
        self.live = 0

    def acquire(self) -> Slot | None:
        if not self.max_streams:
            return None
        if self.live >= self.max_streams:
            raise errors.Overloaded(retry_after=self.retry_after)
        self.live += 1
        return Slot(self._give_back)

    def _give_back(self) -> None:
        self.live -= 1


class FollowerCapacity:
    def __init__(self, per_message: int, per_user: int) -> None:
        self.per_message = per_message
        self.per_user = per_user
        self.by_message: Counter[str] = Counter()
        self.by_user: Counter[str] = Counter()

    def acquire(self, user_id: str, message_id: str) -> Slot:
        if (self.per_message and self.by_message[message_id] >= self.per_message) or (
            self.per_user and self.by_user[user_id] >= self.per_user
        ):
            raise errors.TooManyResumes(retry_after=5)
        self.by_message[message_id] += 1
        self.by_user[user_id] += 1

        def give_back() -> None:
            for counter, key in ((self.by_message, message_id), (self.by_user, user_id)):
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]

        return Slot(give_back)


async def holding(slot: Slot | None, events: AsyncIterator[RelayEvent]) -> AsyncIterator[RelayEvent]:
    """``events``, with ``slot`` given back when the stream closes (for streams with no driver)."""
    try:
        async for event in events:
            yield event
    finally:
        if slot is not None:
            slot.release()
