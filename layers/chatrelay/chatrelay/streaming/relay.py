"""The relay: one chat turn from upstream deltas to client events, persisted on the way.

``TurnRelay.events()`` yields :class:`RelayEvent` objects the moment the provider
yields a delta (no buffering: one upstream chunk, one event). The turn was written
as ``streaming`` before the relay starts; the relay writes it once more when it
ends, whatever the ending:

    ending                                   status     client sees
    upstream finished                        complete   done
    stop endpoint (polled) / client gone     stopped    done (stopped) / nothing
    upstream error, timeout, cut             failed     error, done
    content check refused part of the answer blocked    error (answer_blocked, offset), done
    answer length or duration cap reached    truncated  done (length_cap/time_cap)
    Lambda invocation about to time out      truncated  done (lambda_timeout)

While it runs, a keeper task checkpoints the partial answer (at most once per
``checkpoint_interval``, never per token) so another instance can replay and
follow the turn (``GET /v1/messages/{id}/stream``), writes a heartbeat when there is
nothing new, and reads the stop flag.

With a content-safety monitor the answer is checked behind the stream, in pieces
(``chatrelay.safety.monitor``): a refused piece ends the turn at once, and every
other ending first has the unchecked tail checked. A blocked turn is stored cut at
the last safe offset, and the client is told that offset so it can cut too.

The turn runs in one task (the driver) that reads the upstream directly: the
first-token, idle and total deadlines are a single timeout moved on with each
delta, and a stop request or a refused piece cancels the driver, which then ends
the turn as asked. Nothing is created or raced per chunk, which keeps the CPU cost
per relayed token low (bench/results/report.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence

import anyio
import msgspec

from chatrelay import errors
from chatrelay.events import (
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    MetaEvent,
    OnEnd,
    ReasoningEvent,
    RelayEvent,
    TurnOutcome,
)
from chatrelay.observability import logger, record_turn
from chatrelay.providers.base import ChatDelta, ChatMessage, Provider, StreamParams, Usage
from chatrelay.safety.monitor import AnswerSafetyMonitor
from chatrelay.settings import Settings
from chatrelay.store.base import TurnStore
from chatrelay.store.records import Turn, TurnStatus


class RelayLimits(msgspec.Struct):
    first_token_timeout: float = 60.0
    idle_timeout: float = 60.0
    max_answer_seconds: float = 600.0
    max_answer_chars: int = 100_000
    stop_poll_interval: float = 1.0
    checkpoint_interval: float = 1.0
    heartbeat_interval: float = 10.0
    deadline: float | None = None
    """``time.monotonic()`` by which the turn must have ended (the Lambda invocation's
    deadline less a margin); the turn ends ``truncated`` rather than be killed."""

    @classmethod
    def from_settings(cls, settings: Settings, *, deadline: float | None = None) -> RelayLimits:
        return cls(
            first_token_timeout=settings.first_token_timeout,
            idle_timeout=settings.idle_timeout,
            max_answer_seconds=settings.max_answer_seconds,
            max_answer_chars=settings.max_answer_chars,
            stop_poll_interval=settings.stop_poll_interval,
            checkpoint_interval=settings.checkpoint_interval,
            heartbeat_interval=settings.heartbeat_interval,
            deadline=deadline,
        )


class _Progress(msgspec.Struct):
    answer: list[str] = msgspec.field(default_factory=list)
    reasoning: list[str] = msgspec.field(default_factory=list)
    chars: int = 0
    usage: Usage | None = None
    finish_reason: str | None = None
    ttft_ms: int | None = None


class TurnRelay:
    def __init__(
        self,
        *,
        store: TurnStore,
        provider: Provider,
        user_id: str,
        turn: Turn,
        messages: Sequence[ChatMessage],
        params: StreamParams,
        limits: RelayLimits,
        on_end: Sequence[OnEnd] = (),
        safety: AnswerSafetyMonitor | None = None,
    ) -> None:
        self._store = store
        self._provider = provider
        self._user_id = user_id
        self._turn = turn
        self._messages = messages
        self._params = params
        self._limits = limits
        self._on_end = list(on_end)
        self._safety = safety
        self._progress = _Progress()
        self._finished = False
        self.checkpoints = 0
        self._keeper: asyncio.Task | None = None
        self._upstream: AsyncIterator[ChatDelta] | None = None
        self._first: asyncio.Task[ChatDelta] | None = None
        self._started: float | None = None
        self._driver: asyncio.Task[None] | None = None
        self._interrupted: tuple[TurnStatus, str] | None = None

    def prefetch(self) -> asyncio.Task[ChatDelta]:
        """Send the upstream request now, while the caller is still storing the turn.

        The model's time to first token then overlaps the DynamoDB write instead of
        following it. Call :meth:`discard` if the turn is not going to be relayed.
        Returns the task reading the first delta (the caller may let it send first).
        """
        self._started = time.monotonic()
        self._upstream = self._provider.stream(self._messages, self._params)
        self._first = asyncio.create_task(_next(self._upstream))
        return self._first

    async def discard(self) -> None:
        """Cancel a prefetched upstream request (the turn could not be started)."""
        await _cancel(self._first)
        if self._upstream is not None:
            with contextlib.suppress(Exception):
                await self._upstream.aclose()

    async def events(self, *, finish_on_disconnect: bool = False) -> AsyncIterator[RelayEvent]:
        """The turn's events, for the response.

        The turn runs in a task of its own (the *driver*), which hands events over
        through an outbox. With ``finish_on_disconnect`` a client that goes away does
        not end the turn: it is generated to the end (bounded by the caps) and
        checkpointed, so a resuming client (``GET /v1/messages/{id}/stream``) gets all
        of it, as on Lambda, where a streamed invocation runs on after a disconnect
        anyway. Otherwise the turn ends as ``stopped`` at once, which saves the tokens.
        """
        turn = self._turn
        yield MetaEvent(turn.conversation_id, turn.message_id, turn.model)
        outbox = _Outbox()
        driver = self._driver = asyncio.create_task(self._drive(outbox))
        _detached.add(driver)
        driver.add_done_callback(_detached.discard)
        key = (self._user_id, turn.message_id)
        _running[key] = self
        driver.add_done_callback(lambda _: _running.pop(key, None))
        items, ready = outbox.items, outbox.ready
        try:
            while True:  # the outbox, read here rather than through one more generator
                if not items:
                    ready.clear()
                    await ready.wait()
                event = items.popleft()
                if event is None:
                    return
                yield event
        finally:
            outbox.open = False
            if not finish_on_disconnect and not driver.done():
                driver.cancel()

    def stop_now(self) -> asyncio.Task[None] | None:
        """Stop at once (a stop request reached the process running this turn).

        Returns None when the stop took (the turn is stored ``stopped``), or the driver to
        wait for when the turn was already ending on its own (its own ending is stored).
        """
        driver = self._driver
        if driver is None or driver.done():
            return None
        if self._finished or self._interrupted is not None:
            return driver
        self._interrupt(TurnStatus.STOPPED, "stopped")
        return None

    def _interrupt(self, status: TurnStatus, finish_reason: str) -> None:
        """End the turn from outside the driver (a stop request, a refused piece of the answer)."""
        driver = self._driver
        if self._interrupted is None and not self._finished and driver is not None and not driver.done():
            self._interrupted = (status, finish_reason)
            driver.cancel()

    async def _drive(self, outbox: _Outbox) -> None:
        """Read the upstream, relay each delta the moment it arrives, and persist the ending.

        One task, one upstream read at a time: the deadlines are one timeout that is
        moved on with each delta; a stop or a refused piece cancels the task (see
        :meth:`_interrupt`), so nothing is raced per chunk.
        """
        emit = outbox.put
        limits = self._limits
        progress = self._progress
        started = self._started or time.monotonic()
        upstream = self._upstream = self._upstream or self._provider.stream(self._messages, self._params)
        pending = self._first
        self._keeper = asyncio.create_task(self._keep())
        watch = asyncio.create_task(self._watch_safety()) if self._safety is not None else None
        total_deadline = started + limits.max_answer_seconds
        if limits.deadline is not None:
            total_deadline = min(total_deadline, limits.deadline)
        # The idle deadline is moved at most once per `slack` (rescheduling a timer per delta was a
        # measurable cost per token): it always lies between idle_timeout and idle_timeout + slack
        # after the last delta.
        idle = limits.idle_timeout
        slack = min(1.0, idle / 10)
        move_after = 0.0
        monotonic = time.monotonic
        ending: tuple[TurnStatus, str] | None = None
        try:
            try:
                async with asyncio.timeout_at(min(started + limits.first_token_timeout, total_deadline)) as budget:
                    read_next = upstream.__anext__
                    while True:
                        try:
                            delta = await (pending if pending is not None else read_next())
                        except StopAsyncIteration:
                            ending = (TurnStatus.COMPLETE, progress.finish_reason or "stop")
                            break
                        pending = self._first = None
                        if delta.provider:
                            self._turn.provider = delta.provider
                        if delta.usage is not None:
                            progress.usage = delta.usage
                        if delta.finish_reason:
                            progress.finish_reason = delta.finish_reason
                        if (delta.text or delta.reasoning) and progress.ttft_ms is None:
                            progress.ttft_ms = int((time.monotonic() - started) * 1000)
                        if delta.reasoning:
                            progress.reasoning.append(delta.reasoning)
                            emit(ReasoningEvent(delta.reasoning))
                        if delta.text:
                            room = limits.max_answer_chars - progress.chars
                            text = delta.text[:room]
                            if text:
                                if self._safety is not None and await self._safety.feed(text) is not None:
                                    ending = (TurnStatus.BLOCKED, "blocked")  # nothing more goes out
                                    break
                                progress.answer.append(text)
                                progress.chars += len(text)
                                emit(DeltaEvent(text, progress.chars))
                            if len(delta.text) > room:
                                ending = (TurnStatus.TRUNCATED, "length_cap")
                                break
                        if progress.ttft_ms is not None and (now := monotonic()) >= move_after:
                            budget.reschedule(min(now + idle + slack, total_deadline))
                            move_after = now + slack
            except TimeoutError:
                if time.monotonic() >= total_deadline:
                    lambda_deadline = limits.deadline is not None and total_deadline == limits.deadline
                    ending = (TurnStatus.TRUNCATED, "lambda_timeout" if lambda_deadline else "time_cap")
                else:
                    waiting_for = "first token" if progress.ttft_ms is None else "idle"
                    raise errors.UpstreamTimeout(f"no {waiting_for} within the time limit") from None
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._interrupted is None or (task is not None and task.uncancel() > 0):
                    raise  # cancelled from outside: the client went away, or shutdown
                ending = self._interrupted
            assert ending is not None
            for event in await self._end(*ending, started):
                emit(event)
        except errors.UpstreamError as exc:
            logger.warning("upstream failed", extra={"error_code": exc.code, "upstream_status": exc.status})
            emit(ErrorEvent(exc.code, exc.message))
            for event in await self._end(TurnStatus.FAILED, "error", started, error_code=exc.code):
                emit(event)
        except Exception:
            logger.exception("relay failed")
            emit(ErrorEvent.stream_only(errors.ChatRelayError.code))
            for event in await self._end(TurnStatus.FAILED, "error", started, error_code=errors.ChatRelayError.code):
                emit(event)
        finally:
            # Runs on every exit, including a cancellation from outside (the client went
            # away, shutdown): stop the upstream, then persist the ending.
            with anyio.CancelScope(shield=True):
                await _cancel(self._keeper)
                await _cancel(watch)
                await _cancel(pending)
                with contextlib.suppress(Exception):
                    await upstream.aclose()
                if not self._finished:
                    await self._end(TurnStatus.STOPPED, "client_disconnected", started, quiet=True)
                if self._safety is not None:
                    await self._safety.aclose()
                outbox.close()

    async def _watch_safety(self) -> None:
        assert self._safety is not None
        await self._safety.wait_flagged()
        self._interrupt(TurnStatus.BLOCKED, "blocked")

    async def _keep(self) -> None:
        """Checkpoints the partial answer and watches for a stop request; ends the turn on a stop.

        Each tick makes at most one DynamoDB request: a checkpoint when new text is
        waiting (at most once per ``checkpoint_interval``) or the heartbeat is due,
        else a read of the stop flag. A checkpoint is conditioned on "still streaming
        and no stop requested", so it doubles as the stop check.
        """
        limits = self._limits
        progress = self._progress
        tick = min(limits.stop_poll_interval, limits.checkpoint_interval)
        last_write = time.monotonic()
        written = (0, 0)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            current = (progress.chars, len(progress.reasoning))
            due = (current != written and now - last_write >= limits.checkpoint_interval) or (
                now - last_write >= limits.heartbeat_interval
            )
            try:
                if due:
                    still_running = await self._store.checkpoint_turn(
                        self._user_id, self._turn.message_id,
                        answer="".join(progress.answer), reasoning="".join(progress.reasoning),
                    )
                    last_write, written = now, current
                    self.checkpoints += 1
                    if not still_running:
                        self._interrupt(TurnStatus.STOPPED, "stopped")
                        return
                elif await self._store.stop_requested(self._user_id, self._turn.message_id):
                    self._interrupt(TurnStatus.STOPPED, "stopped")
                    return
            except errors.StorageError:
                logger.warning("checkpoint or stop poll failed; will retry")

    async def _end(
        self,
        status: TurnStatus,
        finish_reason: str,
        started: float,
        *,
        error_code: str | None = None,
        quiet: bool = False,
    ) -> list[RelayEvent]:
        """Persist the ending (once) and return the events that close the stream."""
        self._finished = True
        if self._keeper is not None:
            await _cancel(self._keeper)  # no checkpoint may land after the ending
        progress = self._progress
        answer = "".join(progress.answer)
        closing: list[RelayEvent] = []
        if self._safety is not None:
            # Whatever ended the turn, what is stored is checked: the unchecked tail now.
            cut = await self._safety.finish()
            if cut is not None:
                status, finish_reason, error_code = TurnStatus.BLOCKED, "blocked", errors.ANSWER_BLOCKED
                answer = answer[:cut]
                logger.info("answer blocked", extra={"offset": cut, "checks": self._safety.checks})
                closing.append(ErrorEvent.stream_only(errors.ANSWER_BLOCKED, offset=cut))
        usage = progress.usage.to_dict() if progress.usage else None
        duration_ms = int((time.monotonic() - started) * 1000)
        saved = True
        try:
            await self._store.finish_turn(
                self._user_id,
                self._turn.message_id,
                status=status,
                answer=answer,
                reasoning="".join(progress.reasoning),
                finish_reason=finish_reason,
                error_code=error_code,
                usage=usage,
                ttft_ms=progress.ttft_ms,
                provider=self._turn.provider,
            )
        except errors.ChatRelayError:
            saved = False
            # Never a silent loss: the whole turn goes to the log so it can be recovered.
            logger.exception(
                "turn not saved",
                extra={"turn": {**self._turn.to_api(), "answer": answer, "status": status.value}},
            )
        record_turn(
            user_id=self._user_id,
            status=status.value,
            saved=saved,
            model=self._turn.model,
            ttft_ms=progress.ttft_ms,
            duration_ms=duration_ms,
            usage=usage,
            error_code=error_code,
            answer_chars=len(answer),
        )
        outcome = TurnOutcome(self._user_id, self._turn.message_id, status, usage, len(answer), saved)
        for hook in self._on_end:
            try:
                await hook(outcome)
            except Exception:
                logger.exception("turn end hook failed")
        if quiet:
            return []
        if not saved:
            return [*closing, ErrorEvent.stream_only(errors.NOT_SAVED)]
        return [*closing, DoneEvent(finish_reason, usage)]

    @property
    def answer(self) -> str:
        return "".join(self._progress.answer)


async def _next(upstream: AsyncIterator[ChatDelta]) -> ChatDelta:
    return await upstream.__anext__()


async def _cancel(task: asyncio.Task | None) -> None:
    if task is None or task.done():
        if task is not None and not task.cancelled():
            task.exception()  # mark retrieved; the ending was already decided
        return
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


_detached: set[asyncio.Task] = set()
_running: dict[tuple[str, str], TurnRelay] = {}
"""This process's running turns by (user id, message id): a stop that lands here acts at once
instead of waiting for the turn's next poll of the stop flag."""


def running_relay(user_id: str, message_id: str) -> TurnRelay | None:
    return _running.get((user_id, message_id))


async def drain_detached(timeout: float = 5.0) -> None:
    """At shutdown: end every running turn (stored as ``stopped``) instead of abandoning it."""
    tasks = list(_detached)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


class _Outbox:
    """Events from the driver to the response, in order, one by one (``None`` ends them).

    A deque and an event rather than an ``asyncio.Queue``: the driver never waits
    to put, and the response takes whatever is there without a wake-up per item.
    """

    __slots__ = ("items", "ready", "open")

    def __init__(self) -> None:
        self.items: deque[RelayEvent | None] = deque()
        self.ready = asyncio.Event()
        self.open = True

    def put(self, event: RelayEvent) -> None:
        if self.open:
            self.items.append(event)
            self.ready.set()

    def close(self) -> None:
        self.items.append(None)
        self.ready.set()
