"""Conversations and messages: list, read, rate, stop, delete. All scoped to the caller."""

# No `from __future__ import annotations`: pydantic and FastAPI would evaluate each string annotation
# (a compile and an eval each) when the models and routes are built at start-up.

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from chatrelay import errors
from chatrelay.api.deferred_route import DeferredRoute
from chatrelay.api.schemas import ErrorBody, FeedbackRequest
from chatrelay.api.security import ServicesDep, UserId

router = APIRouter(prefix="/v1", tags=["history"], route_class=DeferredRoute)

IdPath = Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,64}$")]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=2048)]
_404 = {401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}}


@router.get("/conversations", responses=_404)
async def list_conversations(user_id: UserId, services: ServicesDep, limit: Limit = 20, cursor: Cursor = None):
    """The caller's conversations, most recently active first."""
    with errors.naming_field("cursor", errors.InvalidCursor):
        page = await services.store.list_conversations(user_id, limit=limit, cursor=cursor)
    return {"items": [c.to_api() for c in page.items], "nextCursor": page.next_cursor}


@router.get("/conversations/{conversation_id}/messages", responses=_404)
async def list_messages(
    conversation_id: IdPath, user_id: UserId, services: ServicesDep, limit: Limit = 50, cursor: Cursor = None
):
    """A conversation's turns, oldest first."""
    with errors.naming_field("cursor", errors.InvalidCursor):
        page = await services.store.list_turns(user_id, conversation_id, limit=limit, cursor=cursor)
    return {"items": [t.to_api() for t in page.items], "nextCursor": page.next_cursor}


@router.delete("/conversations/{conversation_id}", status_code=204, responses=_404)
async def delete_conversation(conversation_id: IdPath, user_id: UserId, services: ServicesDep):
    await services.store.delete_conversation(user_id, conversation_id)
    return Response(status_code=204)


@router.get("/messages/{message_id}", responses=_404)
async def get_message(message_id: IdPath, user_id: UserId, services: ServicesDep):
    turn = await services.store.get_turn(user_id, message_id)
    if turn is None:
        raise errors.MessageNotFound()
    return turn.to_api()


@router.put("/messages/{message_id}/feedback", responses=_404)
async def set_feedback(message_id: IdPath, body: FeedbackRequest, user_id: UserId, services: ServicesDep):
    """Rate an answer: 1 useful, -1 not useful, 0 cleared."""
    turn = await services.store.set_feedback(user_id, message_id, body.useful)
    return {"messageId": turn.message_id, "useful": turn.useful}


@router.post("/messages/{message_id}/stop", status_code=202, responses=_404)
async def stop_message(message_id: IdPath, user_id: UserId, services: ServicesDep):
    """Ask the stream generating this answer to stop: at once when this process runs it, else
    within the poll interval (``CHATRELAY_STOP_POLL_INTERVAL``, 1 s); the turn is stored ``stopped``.
    ``status`` says how the turn stood when the stop was taken (``complete``: it had ended)."""
    turn = await services.turns.stop(user_id, message_id)
    return {"messageId": turn.message_id, "status": turn.status.value, "stopRequested": True}
