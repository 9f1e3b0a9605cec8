"""Admission of a chat turn: requests per minute, tokens per day, streams at once.

``QuotaGuard.admit`` runs before anything else of a turn happens (no upstream call,
nothing stored) and raises a 429 error with ``Retry-After`` when a limit is
reached:

    limit                          code                   Retry-After
    requests per minute            rate_limited           seconds to the next minute
    tokens per day (UTC)           token_quota_exceeded   seconds to midnight UTC
    answers generating at once     too_many_streams       a few seconds

A limit of 0 is off and costs nothing. The returned :class:`Admission` settles
the turn: its ``on_end`` hook (handed to ``TurnRelay``) adds the turn's tokens to
the day's total and gives the stream's lease back; ``release()`` gives it back
when the turn is not relayed after all (a retried request, a refused question).

The daily token check is "refuse once the day's total has reached the limit":
the turn that crosses it finishes, since its size is only known at its end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from chatrelay import errors
from chatrelay.events import OnEnd, TurnOutcome
from chatrelay.observability import hash_user_id, logger
from chatrelay.quotas.store import LeaseResult, QuotaStore

STREAMS_RETRY_AFTER = 5
"""Seconds a client refused for too many streams is told to wait (streams end or can be stopped)."""


def estimate_tokens(chars: int) -> int:
    """Tokens for a text whose vendor reported no usage (a stopped or failed turn).

    About one token per 3 characters errs high for English (~4) and low for
    Chinese (~1-1.5 per character); it only matters for turns cut short.
    """
    return (chars + 2) // 3


class Admission:
    """A turn let in by the guard; settles its quotas when the turn ends."""

    def __init__(self, guard: QuotaGuard, user_id: str, message_id: str, *, leased: bool,
                 counted_window: str | None = None) -> None:
        self._guard = guard
        self.user_id = user_id
        self.message_id = message_id
        self.leased = leased
        self.counted_window = counted_window
        """The minute this request was counted in, while it may still be refused (then refunded)."""

    async def refuse(self) -> None:
        """The turn was refused after admission (404, conversation full): give everything back,
        the request's place in this minute's count included. Idempotent."""
        window, self.counted_window = self.counted_window, None
        if window is not None:
            await self._guard.store.uncount_request(self.user_id, window)
        await self.release()

    async def release(self) -> None:
        """Give the stream lease back (idempotent)."""
        if self.leased:
            self.leased = False
            await self._guard.store.release_stream(self.user_id, self.message_id)

    def on_end(self, question_chars: int) -> OnEnd:
        """The ``TurnRelay`` hook: count the turn's tokens, then release its lease."""

        async def settle(outcome: TurnOutcome) -> None:
            try:
                if self._guard.tokens_per_day:
                    usage = outcome.usage or {}
                    reported = int(usage.get("totalTokens") or 0)
                    tokens = reported or estimate_tokens(question_chars + outcome.answer_chars)
                    await self._guard.add_tokens(self.user_id, tokens)
            finally:
                await self.release()

        return settle


class QuotaGuard:
    def __init__(
        self,
        store: QuotaStore,
        *,
        per_minute: int = 0,
        tokens_per_day: int = 0,
        max_streams: int = 0,
        lease_seconds: float = 660.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.per_minute = per_minute
        self.tokens_per_day = tokens_per_day
        self.max_streams = max_streams
        self.lease_seconds = lease_seconds
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self.per_minute or self.tokens_per_day or self.max_streams)

    async def admit(self, user_id: str, message_id: str) -> Admission:
        now = self._clock()
        moment = datetime.fromtimestamp(now, UTC)
        window = moment.strftime("%Y%m%d%H%M") if self.per_minute else None
        checks = []
        if self.tokens_per_day:
            checks.append(self._check_tokens(user_id, moment))
        if self.per_minute:
            checks.append(self._count_request(user_id, moment))
        admission = Admission(self, user_id, message_id, leased=False, counted_window=window)
        if checks:
            # Both at once (one round trip of latency); the daily refusal is reported first.
            results = await asyncio.gather(*checks, return_exceptions=True)
            refusals = [result for result in results if isinstance(result, BaseException)]
            if refusals:
                if self.per_minute and not isinstance(results[-1], BaseException):
                    await admission.refuse()  # counted, then refused by the daily quota: not a request
                raise refusals[0]
        if self.max_streams:
            result = await self.store.acquire_stream(
                user_id, message_id, cap=self.max_streams, now=int(now), expires_at=int(now + self.lease_seconds)
            )
            if result is LeaseResult.FULL:
                logger.info("quota refused", extra={"user": hash_user_id(user_id), "quota": "streams"})
                await admission.refuse()
                raise errors.TooManyStreams(
                    f"at most {self.max_streams} answers can be generated at once", retry_after=STREAMS_RETRY_AFTER
                )
            admission.leased = result is LeaseResult.ACQUIRED
        return admission

    async def _check_tokens(self, user_id: str, moment: datetime) -> None:
        used = await self.store.tokens_used(user_id, moment.strftime("%Y-%m-%d"))
        if used >= self.tokens_per_day:
            midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            logger.info("quota refused", extra={"user": hash_user_id(user_id), "quota": "tokens_per_day"})
            raise errors.TokenQuotaExceeded(
                f"the daily quota of {self.tokens_per_day} tokens is used up",
                retry_after=int((midnight - moment).total_seconds()) + 1,
            )

    async def _count_request(self, user_id: str, moment: datetime) -> None:
        window_end = int(moment.timestamp()) // 60 * 60 + 60
        admitted = await self.store.count_request(
            user_id, moment.strftime("%Y%m%d%H%M"), limit=self.per_minute, expires_at=window_end + 60
        )
        if not admitted:
            logger.info("quota refused", extra={"user": hash_user_id(user_id), "quota": "requests_per_minute"})
            raise errors.RateLimited(
                f"at most {self.per_minute} requests per minute", retry_after=window_end - int(moment.timestamp())
            )

    async def add_tokens(self, user_id: str, tokens: int) -> None:
        if tokens <= 0:
            return
        moment = datetime.fromtimestamp(self._clock(), UTC)
        expires = int(moment.timestamp()) + 2 * 86400
        await self.store.add_tokens(user_id, moment.strftime("%Y-%m-%d"), tokens, expires_at=expires)
