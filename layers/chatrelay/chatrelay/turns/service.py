"""Starting and resuming a turn, whatever HTTP surface asked for it.

``TurnService.start`` is the whole use case of a new question, in this order:

1. the prompt's rules (``validation.py``) and the model (the registry), then
2. admission, before any upstream call and before anything is stored: the conversation's
   length and the per-user quotas, side by side (one round trip of latency);
3. the content check of the question: a refused one is stored ``blocked`` and never sent
   upstream;
4. the turn's start write; for a new conversation without a ``requestId`` the upstream
   request is sent just before it (the model's time to first token overlaps the write;
   never with a ``requestId``: a retry must never reach the model twice), and for an
   existing conversation its history is read at the same time;
5. a duplicate ``requestId`` replays (and follows) the stored turn, one path for every kind of
   turn; otherwise the relay streams the answer.

Refusals in steps 1-3 raise ``chatrelay.errors`` (4xx) with nothing stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
from msgspec.structs import replace

from chatrelay import errors
from chatrelay.events import DoneEvent, ErrorEvent, MetaEvent, RelayEvent
from chatrelay.ids import message_id_for_request, new_ulid
from chatrelay.observability import hash_user_id, logger
from chatrelay.providers.base import ChatMessage, Provider, StreamParams
from chatrelay.providers.registry import Preset, ProviderRegistry
from chatrelay.quotas import Admission, QuotaGuard
from chatrelay.safety import ContentSafety
from chatrelay.settings import Settings
from chatrelay.store.base import TurnStore
from chatrelay.store.records import Turn, TurnStatus, utc_now
from chatrelay.streaming.follow import follow_turn
from chatrelay.streaming.relay import RelayLimits, TurnRelay, running_relay
from chatrelay.turns.capacity import FollowerCapacity, Slot, StreamCapacity, holding
from chatrelay.turns.context import build_messages, client_messages
from chatrelay.turns.validation import check_prompt


class TurnRequest(msgspec.Struct, frozen=True):
    """A new question, as any surface received it (already type-checked)."""

    prompt: str
    conversation_id: str | None = None
    model: str | None = None
    request_id: str | None = None
    terminal: str | None = None
    window: str | None = None
    context: tuple[ChatMessage, ...] | None = None
    """The earlier messages the client sent (the OpenAI contract): the model sees these instead
    of the stored history. None: the stored conversation is the context."""
    create_conversation: bool = False
    """With a ``conversation_id``: create that conversation if the caller has none by that id
    (a client-named chat, as the AI SDK's ``useChat`` names it) instead of answering 404."""
    new_conversation_id: str | None = None
    """The id a new conversation gets (default: a new ULID)."""
    regenerate: bool = False
    """Answer the conversation's last question again (``prompt`` is ignored): a new turn with
    that question, whose context leaves out the turn it answers again (which stays stored)."""
    exclude_message_id: str | None = None


class TurnStream(msgspec.Struct, frozen=True):
    """A turn's identity and its events, for a route to wrap in a response."""

    conversation_id: str
    message_id: str
    model: str
    events: AsyncIterator[RelayEvent]


class TurnService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: TurnStore,
        registry: ProviderRegistry,
        quotas: QuotaGuard | None = None,
        safety: ContentSafety | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._registry = registry
        self._quotas = quotas if quotas is not None and quotas.enabled else None
        self._safety = safety
        self.capacity = StreamCapacity(settings.max_process_streams)
        self.followers = FollowerCapacity(settings.max_followers_per_message, settings.max_followers_per_user)

    async def start(self, user_id: str, request: TurnRequest, *, deadline: float | None = None) -> TurnStream:
        """Admit, check and start a turn; ``deadline`` is the ``time.monotonic()`` it must end by."""
        if request.regenerate:
            request = await self._again(user_id, request)
        check_prompt(request.prompt, max_chars=self._settings.max_prompt_chars)
        preset, provider = self._registry.resolve(request.model)
        message_id = message_id_for_request(user_id, request.request_id) if request.request_id else new_ulid()
        slot = self.capacity.acquire()  # refused here when overloaded: nothing asked, nothing stored
        try:
            return await self._admitted(user_id, request, preset, provider, message_id, slot, deadline)
        except BaseException:
            if slot is not None:
                slot.release()
            raise

    async def _admitted(
        self, user_id: str, request: TurnRequest, preset: Preset, provider: Provider, message_id: str,
        slot: Slot | None, deadline: float | None,
    ) -> TurnStream:
        if request.create_conversation and request.conversation_id is not None:
            if await self._store.get_conversation(user_id, request.conversation_id) is None:
                # Created with the turn, under the client's id (the turn's start write is atomic).
                request = replace(request, create_conversation=False, new_conversation_id=request.conversation_id,
                                  conversation_id=None)
        admission = await self._admit(user_id, request.conversation_id, message_id)
        try:
            stream = await self._open(user_id, request, preset, provider, message_id, admission, slot, deadline)
        except BaseException as exc:
            if admission is not None:
                # Refused (the conversation is not the caller's, or full): not a request that counts.
                await (admission.refuse() if isinstance(exc, errors.RequestError) else admission.release())
            raise
        if admission is not None:
            admission.counted_window = None  # the turn started: the request stays counted
        return stream

    async def _again(self, user_id: str, request: TurnRequest) -> TurnRequest:
        last = None
        if request.conversation_id is not None:
            recent = await self._store.recent_turns(user_id, request.conversation_id, 1)
            last = recent[-1] if recent else None
        if last is None:
            raise errors.InvalidRequest("there is no question to answer again", field="trigger")
        return replace(request, prompt=last.question, regenerate=False, exclude_message_id=last.message_id,
                       create_conversation=False)

    async def running(self, user_id: str, conversation_id: str) -> TurnStream | None:
        """The conversation's latest turn replayed from its start and followed, if it is still running."""
        recent = await self._store.recent_turns(user_id, conversation_id, 1)
        if not recent:
            return None
        turn = await self._store.get_turn(user_id, recent[-1].message_id)  # settles a vanished stream
        if turn is None or turn.status is not TurnStatus.STREAMING:
            return None
        return self._stream(turn, self._follow(user_id, turn))

    async def stop(self, user_id: str, message_id: str) -> Turn:
        """Stop a running answer: at once when this process runs it, else through the stored flag,
        which the stream generating it (on any instance) reads within its poll interval."""
        await _stop_here(user_id, message_id)
        return await self._store.request_stop(user_id, message_id)

    async def stop_request(self, user_id: str, request_id: str) -> Turn:
        """``stop`` for a turn named by its request id, also before it started (it then never starts)."""
        message_id = message_id_for_request(user_id, request_id)
        await _stop_here(user_id, message_id)
        return await self._store.stop_request(user_id, message_id, request_id)

    async def turn_for_request(self, user_id: str, request_id: str) -> Turn:
        turn = await self._store.get_turn(user_id, message_id_for_request(user_id, request_id))
        if turn is None:
            raise errors.MessageNotFound()
        return turn

    async def resume(self, user_id: str, message_id: str, *, after: int = 0) -> TurnStream:
        """A stored turn from ``after`` on, followed while another stream is still writing it."""
        turn = await self._store.get_turn(user_id, message_id)
        if turn is None:
            raise errors.MessageNotFound()
        return self._stream(turn, self._follow(user_id, turn, after=after))

    async def _admit(self, user_id: str, conversation_id: str | None, message_id: str) -> Admission | None:
        if self._quotas is None and (conversation_id is None or not self._settings.max_conversation_turns):
            return None  # nothing to check: no tasks, no round trip (this runs before the upstream request)
        async def conversation_room() -> None:
            max_turns = self._settings.max_conversation_turns
            if conversation_id is None or not max_turns:
                return
            conversation = await self._store.get_conversation(user_id, conversation_id)
            if conversation is None:
                raise errors.ConversationNotFound(field="conversationId")
            if conversation.turn_count >= max_turns:
                raise errors.ConversationTooLong(
                    f"a conversation holds at most {max_turns} turns; start a new one", field="conversationId"
                )

        async def quotas() -> Admission | None:
            return None if self._quotas is None else await self._quotas.admit(user_id, message_id)

        room, admitted = await asyncio.gather(conversation_room(), quotas(), return_exceptions=True)
        if isinstance(room, BaseException):
            if isinstance(admitted, Admission):
                await admitted.refuse()  # a refused request does not count against the rate limit
            raise room
        if isinstance(admitted, BaseException):
            raise admitted
        return admitted

    async def _question_blocked(self, user_id: str, prompt: str) -> bool:
        if self._safety is None:
            return False
        verdict = await self._safety.question_verdict(prompt, user_id=user_id)
        if not self._safety.blocks(verdict):
            return False
        logger.info("question blocked", extra={"user": hash_user_id(user_id), "label": verdict.label,
                                               "checker": verdict.source})
        return True

    async def _open(
        self,
        user_id: str,
        request: TurnRequest,
        preset: Preset,
        provider: Provider,
        message_id: str,
        admission: Admission | None,
        slot: Slot | None,
        deadline: float | None,
    ) -> TurnStream:
        turn = Turn(
            message_id=message_id,
            conversation_id=request.conversation_id or request.new_conversation_id or new_ulid(),
            question=request.prompt,
            model=preset.name,
            created_at=utc_now(),
            terminal=request.terminal,
            window=request.window,
            request_id=request.request_id,
            provider=preset.name,
        )
        blocked = await self._question_blocked(user_id, request.prompt)
        if blocked and admission is not None:
            await admission.release()  # no stream will run
            admission = None
        limits = RelayLimits.from_settings(self._settings, deadline=deadline)

        def relay_for(history: list[Turn]) -> TurnRelay:
            settings = self._settings
            if request.context is not None:
                messages = client_messages(
                    settings.system_prompt, request.context, request.prompt, max_chars=settings.context_max_chars,
                    max_turns=settings.context_max_turns, allow_system=settings.allow_client_system_messages)
            else:
                messages = build_messages(settings.system_prompt, history, request.prompt, settings.context_max_chars)
            on_end = [admission.on_end(sum(len(m.content) for m in messages))] if admission is not None else []
            if slot is not None:
                on_end.append(slot.on_end)
            relay = TurnRelay(
                store=self._store, provider=provider, user_id=user_id, turn=turn, messages=messages,
                params=StreamParams(model=preset.model, max_tokens=settings.max_output_tokens), limits=limits,
                on_end=on_end, safety=self._safety.answer_monitor(user_id) if self._safety is not None else None,
            )
            if slot is not None:
                slot.tie_to(relay)
            return relay

        relay: TurnRelay | None = None
        first: asyncio.Task | None = None
        history_read: asyncio.Task[list[Turn]] | None = None
        needs_history = request.conversation_id is not None and request.context is None
        if not blocked and not needs_history and request.request_id is None:
            relay = relay_for([])
            first = relay.prefetch()
        elif not blocked and needs_history:
            history_read = asyncio.create_task(self._store.recent_turns(
                user_id, request.conversation_id,
                self._settings.context_max_turns + 1 + bool(request.exclude_message_id)))
        try:
            if first is not None:
                await _until_sent(first)
            with errors.naming_field("conversationId", errors.ConversationNotFound, errors.ConversationTooLong):
                start = await self._store.start_turn(user_id, request.conversation_id, turn,
                                                     max_turns=self._settings.max_conversation_turns)
        except BaseException:
            await _abandon(relay, history_read)
            raise
        turn = start.turn
        if start.duplicate or blocked:
            if slot is not None:
                slot.release()  # no answer is generated here
        if start.duplicate:
            await _abandon(relay, history_read)
            if admission is not None:
                await admission.release()  # the first attempt holds (or held) the stream's lease
            # A retried requestId never asks the model again: replay the stored turn, and
            # follow it if the first attempt is still streaming.
            return self._stream(turn, self._follow(user_id, turn))
        if blocked:
            return self._stream(turn, await self._refuse(user_id, turn))
        if relay is None:
            skip = {turn.message_id, request.exclude_message_id}
            history = [t for t in (await history_read if history_read else []) if t.message_id not in skip]
            relay = relay_for(history[-self._settings.context_max_turns :])
        return self._stream(turn, relay.events(finish_on_disconnect=self._settings.finish_on_disconnect))

    async def _refuse(self, user_id: str, turn: Turn) -> AsyncIterator[RelayEvent]:
        """Store the turn as ``blocked`` (the model is never asked); the events tell the client why."""
        await self._store.finish_turn(user_id, turn.message_id, status=TurnStatus.BLOCKED, answer="",
                                      finish_reason="blocked", error_code=errors.QUESTION_BLOCKED)

        async def refusal() -> AsyncIterator[RelayEvent]:
            yield MetaEvent(turn.conversation_id, turn.message_id, turn.model)
            yield ErrorEvent.stream_only(errors.QUESTION_BLOCKED)
            yield DoneEvent("blocked", None)

        return refusal()

    def _follow(self, user_id: str, turn: Turn, *, after: int = 0) -> AsyncIterator[RelayEvent]:
        settings = self._settings
        slot = self.followers.acquire(user_id, turn.message_id) if turn.status is TurnStatus.STREAMING else None
        events = holding(slot, follow_turn(self._store, user_id, turn, after=after,
                                           poll_interval=settings.resume_poll_interval,
                                           max_seconds=settings.max_answer_seconds))
        if slot is not None:
            slot.tie_to(events)
        return events

    @staticmethod
    def _stream(turn: Turn, events: AsyncIterator[RelayEvent]) -> TurnStream:
        return TurnStream(turn.conversation_id, turn.message_id, turn.model, events)


async def _stop_here(user_id: str, message_id: str) -> None:
    """Stop the turn at once if this process runs it; if it was already ending on its own,
    let its ending be stored first, so the stop's answer says how it ended."""
    relay = running_relay(user_id, message_id)
    ending = relay.stop_now() if relay is not None else None
    if ending is not None:
        await asyncio.wait([ending], timeout=5)


_SEND_STEPS = 8
"""Loop iterations the upstream request may take to go out (one or two on an idle pooled connection)."""


async def _until_sent(task: asyncio.Task) -> None:
    """Let a prefetched upstream request reach the socket before the turn's start write.

    Both run on the event loop; the write's encoding and signing, if they came first, would
    delay the request the model's time to first token waits on. The request is out once its
    task waits on I/O (``_fut_waiter``: a bare ``sleep(0)``-style yield leaves it unset);
    bounded, so a slow path (a new connection) delays the write only a little. ``_fut_waiter`` is
    CPython's (3.11-3.13, C and Python tasks alike), not an API: where a task lacks it, the
    write waits the bounded steps.
    """
    for _ in range(_SEND_STEPS):
        if task.done() or getattr(task, "_fut_waiter", None) is not None:
            return
        await asyncio.sleep(0)


async def _abandon(relay: TurnRelay | None, history_read: asyncio.Task | None) -> None:
    """Undo the work started alongside the start write (a duplicate, or the write failed)."""
    if relay is not None:
        await relay.discard()
    if history_read is not None:
        history_read.cancel()
