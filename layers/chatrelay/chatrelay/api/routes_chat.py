"""``POST /v1/chat/stream``: start a turn and relay its answer as SSE; ``GET /v1/messages/{id}/stream``: resume it."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request

from chatrelay import errors
from chatrelay.api.lambda_context import remaining_seconds
from chatrelay.api.schemas import ChatStreamRequest, ErrorBody
from chatrelay.api.security import ServicesDep, UserId
from chatrelay.ids import message_id_for_request, new_ulid
from chatrelay.providers.base import StreamParams
from chatrelay.store.dynamodb import utc_now
from chatrelay.store.records import Turn
from chatrelay.streaming.follow import follow_turn
from chatrelay.streaming.relay import RelayLimits, TurnRelay, build_messages, run_detached
from chatrelay.streaming.response import sse_response

router = APIRouter(prefix="/v1", tags=["chat"])

_ERRORS = {
    401: {"model": ErrorBody},
    404: {"model": ErrorBody, "description": "conversationId is not one of yours"},
    422: {"model": ErrorBody},
}


@router.post(
    "/chat/stream",
    responses={200: {"content": {"text/event-stream": {}}, "description": "The answer as SSE."}, **_ERRORS},
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
    preset, provider = services.registry.resolve(body.model)
    message_id = message_id_for_request(user_id, body.request_id) if body.request_id else new_ulid()
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
        return TurnRelay(store=services.store, provider=provider, user_id=user_id, turn=turn,
                         messages=messages, params=params, limits=limits)

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
        # A retried requestId never asks the model again: replay the stored turn, and
        # follow it if the first attempt is still streaming.
        replay = follow_turn(services.store, user_id, turn, poll_interval=settings.resume_poll_interval,
                             max_seconds=settings.max_answer_seconds)
        return sse_response(replay, fmt=format, ping_interval=settings.ping_interval, headers=headers)
    if relay is None:
        history = [t for t in (await history_read if history_read else []) if t.message_id != turn.message_id]
        relay = relay_for(history[-settings.context_max_turns :])
    events = run_detached(relay.events(), finish_on_disconnect=settings.finish_on_disconnect)
    return sse_response(events, fmt=format, ping_interval=settings.ping_interval, headers=headers)


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
        raise errors.NotFound("message not found")
    settings = services.settings
    events = follow_turn(services.store, user_id, turn, after=offset or 0,
                         poll_interval=settings.resume_poll_interval, max_seconds=settings.max_answer_seconds)
    headers = {"X-Conversation-Id": turn.conversation_id, "X-Message-Id": turn.message_id}
    return sse_response(events, fmt=format, ping_interval=settings.ping_interval, headers=headers)
