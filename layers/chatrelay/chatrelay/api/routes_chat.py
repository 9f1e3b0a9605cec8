"""``POST /v1/chat/stream``: start a turn, relay the answer as SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, Query

from chatrelay import errors
from chatrelay.api.schemas import ChatStreamRequest, ErrorBody
from chatrelay.api.security import ServicesDep, UserId
from chatrelay.ids import message_id_for_request, new_ulid
from chatrelay.providers.base import StreamParams
from chatrelay.store.dynamodb import utc_now
from chatrelay.store.records import Turn, TurnStatus
from chatrelay.streaming.relay import (
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    MetaEvent,
    ReasoningEvent,
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
    409: {"model": ErrorBody, "description": "requestId is still being answered"},
    422: {"model": ErrorBody},
}


@router.post(
    "/chat/stream",
    responses={200: {"content": {"text/event-stream": {}}, "description": "The answer as SSE."}, **_ERRORS},
)
async def chat_stream(
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
    start = await services.store.start_turn(user_id, body.conversation_id, turn)
    turn = start.turn
    headers = {"X-Conversation-Id": turn.conversation_id, "X-Message-Id": turn.message_id}
    if start.duplicate:
        if turn.status is TurnStatus.STREAMING:
            raise errors.RequestInProgress(messageId=turn.message_id)
        return sse_response(_replay(turn), fmt=format, ping_interval=settings.ping_interval, headers=headers)

    history: list[Turn] = []
    if body.conversation_id:
        recent = await services.store.recent_turns(user_id, turn.conversation_id, settings.context_max_turns + 1)
        history = [t for t in recent if t.message_id != turn.message_id][-settings.context_max_turns :]
    relay = TurnRelay(
        store=services.store,
        provider=provider,
        user_id=user_id,
        turn=turn,
        messages=build_messages(settings.system_prompt, history, body.prompt, settings.context_max_chars),
        params=StreamParams(model=preset.model, max_tokens=settings.max_output_tokens),
        limits=RelayLimits(
            first_token_timeout=settings.first_token_timeout,
            idle_timeout=settings.idle_timeout,
            max_answer_seconds=settings.max_answer_seconds,
            max_answer_chars=settings.max_answer_chars,
            stop_poll_interval=settings.stop_poll_interval,
        ),
    )
    return sse_response(relay.events(), fmt=format, ping_interval=settings.ping_interval, headers=headers)


async def _replay(turn: Turn) -> AsyncIterator[RelayEvent]:
    """A retried requestId gets the stored turn back, without asking the model again."""
    yield MetaEvent(turn.conversation_id, turn.message_id, turn.model)
    if turn.reasoning:
        yield ReasoningEvent(turn.reasoning)
    if turn.answer:
        yield DeltaEvent(turn.answer, len(turn.answer))
    if turn.status is TurnStatus.FAILED:
        yield ErrorEvent(turn.error_code or "upstream_error", "the answer failed")
    yield DoneEvent(turn.finish_reason or turn.status.value, turn.usage)
