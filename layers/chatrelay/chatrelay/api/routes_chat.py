"""``POST /v1/chat/stream``: start a turn and relay its answer as SSE; ``GET /v1/messages/{id}/stream``: resume it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request

from chatrelay import errors
from chatrelay.api.lambda_context import remaining_seconds
from chatrelay.api.limits import check_prompt
from chatrelay.api.schemas import ChatStreamRequest, ErrorBody
from chatrelay.api.security import ServicesDep, UserId
from chatrelay.api.services import Services
from chatrelay.ids import message_id_for_request, new_ulid
from chatrelay.observability import hash_user_id, logger
from chatrelay.providers.base import Provider, StreamParams
from chatrelay.providers.registry import Preset
from chatrelay.quotas import Admission
from chatrelay.store.records import Turn, TurnStatus, utc_now
from chatrelay.streaming.follow import follow_turn
from chatrelay.streaming.relay import (
    DoneEvent,
    ErrorEvent,
    MetaEvent,
    RelayEvent,
    RelayLimits,
    TurnRelay,
    build_messages,
)
from chatrelay.streaming.response import sse_response

router = APIRouter(prefix="/v1", tags=["chat"])

_ERRORS = {
    401: {"model": ErrorBody},
    404: {"model": ErrorBody, "description": "conversationId is not one of yours"},
    422: {"model": ErrorBody},
}
_CHAT_ERRORS = {
    **_ERRORS,
    413: {"model": ErrorBody, "description": "payload_too_large"},
    429: {"model": ErrorBody, "description": "rate_limited, token_quota_exceeded or too_many_streams (Retry-After)"},
    503: {"model": ErrorBody, "description": "storage_unavailable or content_check_unavailable"},
}


@router.post(
    "/chat/stream",
    responses={200: {"content": {"text/event-stream": {}}, "description": "The answer as SSE."}, **_CHAT_ERRORS},
)
async def chat_stream(
    request: Request,
    body: ChatStreamRequest,
    user_id: UserId,
    services: ServicesDep,
    format: Literal["json", "text"] = Query("json", description="`text`: raw text deltas for `answer += e.data`."),
):
    settings = services.settings
    if len(body.prompt) > settings.max_prompt_chars:
        raise errors.InvalidRequest(f"prompt is longer than {settings.max_prompt_chars} characters", field="prompt")
    check_prompt(body.prompt)
    preset, provider = services.registry.resolve(body.model)
    message_id = message_id_for_request(user_id, body.request_id) if body.request_id else new_ulid()
    # Refusals (conversation too long, quotas, a blocked question) come before any
    # upstream call and before anything is stored.
    admission = await _admit(services, user_id, body.conversation_id, message_id)
    try:
        return await _start_chat(request, body, user_id, services, format, preset, provider, message_id, admission)
    except BaseException:
        if admission is not None:
            await admission.release()
        raise


async def _admit(services: Services, user_id: str, conversation_id: str | None, message_id: str) -> Admission | None:
    """The conversation-length check and the quotas, side by side (one round trip of latency)."""
    settings = services.settings

    async def conversation_room() -> None:
        if conversation_id is None or not settings.max_conversation_turns:
            return
        conversation = await services.store.get_conversation(user_id, conversation_id)
        if conversation is None:
            raise errors.ConversationNotFound(field="conversationId")
        if conversation.turn_count >= settings.max_conversation_turns:
            raise errors.ConversationTooLong(
                f"a conversation holds at most {settings.max_conversation_turns} turns; start a new one",
                field="conversationId",
            )

    async def quotas() -> Admission | None:
        if services.quotas is None or not services.quotas.enabled:
            return None
        return await services.quotas.admit(user_id, message_id)

    room, admitted = await asyncio.gather(conversation_room(), quotas(), return_exceptions=True)
    if isinstance(room, BaseException):
        if isinstance(admitted, Admission):
            await admitted.release()
        raise room
    if isinstance(admitted, BaseException):
        raise admitted
    return admitted


async def _start_chat(
    request: Request,
    body: ChatStreamRequest,
    user_id: str,
    services: Services,
    format: Literal["json", "text"],
    preset: Preset,
    provider: Provider,
    message_id: str,
    admission: Admission | None,
):
    settings = services.settings
    turn = Turn(
        message_id=message_id,
        conversation_id=body.conversation_id or new_ulid(),
        question=body.prompt,
        model=preset.name,
        created_at=utc_now(),
        terminal=body.terminal,
        window=body.window,
        request_id=body.request_id,
        provider=preset.name,
    )
    if services.safety is not None:
        verdict = await services.safety.question_verdict(body.prompt, user_id=user_id)
        if services.safety.blocks(verdict):
            logger.info("question blocked", extra={"user": hash_user_id(user_id), "label": verdict.label,
                                                   "checker": verdict.source})
            if admission is not None:
                await admission.release()  # no stream will run
            return await _refuse_question(services, user_id, body.conversation_id, turn, format)
    limits = RelayLimits(
        first_token_timeout=settings.first_token_timeout,
        idle_timeout=settings.idle_timeout,
        max_answer_seconds=settings.max_answer_seconds,
        max_answer_chars=settings.max_answer_chars,
        stop_poll_interval=settings.stop_poll_interval,
        checkpoint_interval=settings.checkpoint_interval,
        heartbeat_interval=settings.heartbeat_interval,
        deadline=_deadline(request, settings.lambda_deadline_margin),
    )
    params = StreamParams(model=preset.model, max_tokens=settings.max_output_tokens)

    def relay_for(history: list[Turn]) -> TurnRelay:
        messages = build_messages(settings.system_prompt, history, body.prompt, settings.context_max_chars)
        on_end = [admission.on_end(sum(len(m.content) for m in messages))] if admission is not None else []
        safety = services.safety.answer_monitor(user_id) if services.safety is not None else None
        return TurnRelay(store=services.store, provider=provider, user_id=user_id, turn=turn,
                         messages=messages, params=params, limits=limits, on_end=on_end, safety=safety)

    relay: TurnRelay | None = None
    history_read: asyncio.Task[list[Turn]] | None = None
    if body.conversation_id is None and body.request_id is None:
        # A new conversation needs no history: the model starts while the turn is stored.
        # (Not with a requestId: a retry must never reach the model twice.)
        relay = relay_for([])
        relay.prefetch()
    elif body.conversation_id is not None:
        # The context read overlaps the turn's start write.
        history_read = asyncio.create_task(
            services.store.recent_turns(user_id, body.conversation_id, settings.context_max_turns + 1))
    try:
        with errors.naming_field("conversationId", errors.ConversationNotFound):
            start = await services.store.start_turn(user_id, body.conversation_id, turn)
    except BaseException:
        if relay is not None:
            await relay.discard()
        if history_read is not None:
            history_read.cancel()
        raise
    turn = start.turn
    headers = {"X-Conversation-Id": turn.conversation_id, "X-Message-Id": turn.message_id}
    if start.duplicate:
        if relay is not None:
            await relay.discard()
        if history_read is not None:
            history_read.cancel()
        if admission is not None:
            await admission.release()  # the first attempt holds (or held) the stream's lease
        # A retried requestId never asks the model again: replay the stored turn, and
        # follow it if the first attempt is still streaming.
        replay = follow_turn(services.store, user_id, turn, poll_interval=settings.resume_poll_interval,
                             max_seconds=settings.max_answer_seconds)
        return sse_response(replay, fmt=format, ping_interval=settings.ping_interval, headers=headers)
    if relay is None:
        history = [t for t in (await history_read if history_read else []) if t.message_id != turn.message_id]
        relay = relay_for(history[-settings.context_max_turns :])
    events = relay.events(finish_on_disconnect=settings.finish_on_disconnect)
    return sse_response(events, fmt=format, ping_interval=settings.ping_interval, headers=headers)


async def _refuse_question(
    services: Services, user_id: str, conversation_id: str | None, turn: Turn, fmt: Literal["json", "text"]
):
    """Store the turn as ``blocked`` (the model is never asked) and tell the client why."""
    settings = services.settings
    with errors.naming_field("conversationId", errors.ConversationNotFound):
        start = await services.store.start_turn(user_id, conversation_id, turn)
    turn = start.turn
    headers = {"X-Conversation-Id": turn.conversation_id, "X-Message-Id": turn.message_id}
    if start.duplicate:
        replay = follow_turn(services.store, user_id, turn, poll_interval=settings.resume_poll_interval,
                             max_seconds=settings.max_answer_seconds)
        return sse_response(replay, fmt=fmt, ping_interval=settings.ping_interval, headers=headers)
    await services.store.finish_turn(user_id, turn.message_id, status=TurnStatus.BLOCKED, answer="",
                                     finish_reason="blocked", error_code="question_blocked")

    async def refusal() -> AsyncIterator[RelayEvent]:
        yield MetaEvent(turn.conversation_id, turn.message_id, turn.model)
        yield ErrorEvent("question_blocked", "the question was refused by the content check")
        yield DoneEvent("blocked", None)

    return sse_response(refusal(), fmt=fmt, ping_interval=settings.ping_interval, headers=headers)


def _deadline(request: Request, margin: float) -> float | None:
    remaining = remaining_seconds(request)
    return None if remaining is None else time.monotonic() + remaining - margin


@router.get(
    "/messages/{message_id}/stream",
    responses={200: {"content": {"text/event-stream": {}}, "description": "The answer from the offset on."},
               **_ERRORS},
)
async def resume_stream(
    message_id: Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,64}$")],
    user_id: UserId,
    services: ServicesDep,
    after: Annotated[int | None, Query(ge=0, description="Answer offset already received.")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    format: Literal["json", "text"] = Query("json"),
):
    """Resume a turn after a dropped connection: the answer from ``Last-Event-ID`` (or
    ``after``) on, then, while the turn is still being generated (by any instance),
    its new text as it is checkpointed, until it ends."""
    offset = after
    if offset is None and last_event_id:
        if not last_event_id.isdigit():
            raise errors.InvalidRequest("Last-Event-ID must be an answer offset", field="Last-Event-ID")
        offset = int(last_event_id)
    turn = await services.store.get_turn(user_id, message_id)
    if turn is None:
        raise errors.MessageNotFound()
    settings = services.settings
    events = follow_turn(services.store, user_id, turn, after=offset or 0,
                         poll_interval=settings.resume_poll_interval, max_seconds=settings.max_answer_seconds)
    headers = {"X-Conversation-Id": turn.conversation_id, "X-Message-Id": turn.message_id}
    return sse_response(events, fmt=format, ping_interval=settings.ping_interval, headers=headers)
