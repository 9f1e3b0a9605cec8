"""A turn named by the ``requestId`` its client chose: read it, or stop it before its id is known.

A client that has sent ``POST /v1/chat/stream`` with a ``requestId`` but has not seen the
response head yet (a cold start, a page unloading, a runtime that cannot stream) can still
name its turn. The message id is derived from the caller's user id and the request id, so
another user's request id names nothing of theirs (404). Request ids with ``/`` cannot be
named in a path: clients that need these routes generate ids from ``[0-9A-Za-z_-]``.
"""

# No `from __future__ import annotations`: pydantic and FastAPI would evaluate each string annotation
# (a compile and an eval each) when the models and routes are built at start-up.

from typing import Annotated

from fastapi import APIRouter, Path

from chatrelay.api.deferred_route import DeferredRoute
from chatrelay.api.schemas import ErrorBody
from chatrelay.api.security import ServicesDep, UserId

router = APIRouter(prefix="/v1/requests", tags=["history"], route_class=DeferredRoute)
RequestIdPath = Annotated[str, Path(pattern=r"^[\x21-\x2e\x30-\x7e]{1,128}$")]
_404 = {404: {"model": ErrorBody}, 401: {"model": ErrorBody}}


@router.get("/{request_id}", responses=_404)
async def get_request(request_id: RequestIdPath, user_id: UserId, services: ServicesDep):
    """The turn of this request, as ``GET /v1/messages/{id}`` shows it (404 until it is stored).
    A client without a chunked transport polls this for the checkpointed answer (about 1/s)."""
    return (await services.turns.turn_for_request(user_id, request_id)).to_api()


@router.post("/{request_id}/stop", status_code=202, responses=_404)
async def stop_request(request_id: RequestIdPath, user_id: UserId, services: ServicesDep):
    """Stop the turn of this request. Before the turn exists, it is stored ``stopped`` at once
    and the request, when it arrives, replays that ending without asking the model."""
    turn = await services.turns.stop_request(user_id, request_id)
    return {"messageId": turn.message_id, "status": turn.status.value, "stopRequested": True}
