"""Per-provider time limits: first token, silence between tokens, whole answer.

The relay bounds every turn with the service-wide limits; a provider configured
with its own (``timeouts:`` in the providers file) is wrapped in
:class:`TimedProvider`, so a slow vendor fails with ``UpstreamTimeout`` early
enough for a failover to try the next one. A "token" is a delta with answer or
reasoning text; usage-only or empty deltas do not reset the idle clock.

Each wait runs inside ``asyncio.timeout`` entered and left within one step of
the generator (never across a ``yield``), because the relay awaits every step in
a task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import msgspec

from chatrelay import errors
from chatrelay.providers.base import ChatDelta, ChatMessage, Provider, StreamParams


class Timeouts(msgspec.Struct, frozen=True):
    """Seconds; ``None`` leaves a limit to the relay's service-wide settings."""

    connect: float | None = None
    first_token: float | None = None
    idle: float | None = None
    total: float | None = None

    @property
    def bounds_stream(self) -> bool:
        return any(v is not None for v in (self.first_token, self.idle, self.total))


class TimedProvider:
    """A provider whose streams fail with ``UpstreamTimeout`` when a limit passes."""

    def __init__(self, inner: Provider, timeouts: Timeouts) -> None:
        self.name = inner.name
        self.inner = inner
        self.timeouts = timeouts

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def stream(self, messages: Sequence[ChatMessage], params: StreamParams) -> AsyncIterator[ChatDelta]:
        loop = asyncio.get_running_loop()
        limits = self.timeouts
        started = loop.time()
        total_deadline = started + limits.total if limits.total is not None else None
        upstream = self.inner.stream(messages, params)
        seen_token = False
        try:
            while True:
                if seen_token:
                    wait, what = limits.idle, "next token"
                else:
                    wait, what = limits.first_token, "first token"
                deadline = loop.time() + wait if wait is not None else None
                if total_deadline is not None and (deadline is None or total_deadline <= deadline):
                    deadline, wait, what = total_deadline, limits.total, "end of the answer"
                timer = asyncio.timeout_at(deadline)
                try:
                    async with timer:
                        delta = await upstream.__anext__()
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not timer.expired():
                        raise
                    raise errors.UpstreamTimeout(f"{self.name}: no {what} within {wait:g} s") from None
                if delta.text or delta.reasoning:
                    seen_token = True
                yield delta
        finally:
            await upstream.aclose()
