"""The caller's own data: ``DELETE /v1/me/data`` erases all of it."""

# No `from __future__ import annotations`: pydantic and FastAPI would evaluate each string annotation
# (a compile and an eval each) when the models and routes are built at start-up.

from fastapi import APIRouter, Response

from chatrelay.api.deferred_route import DeferredRoute
from chatrelay.api.schemas import ErrorBody
from chatrelay.api.security import ServicesDep, UserId
from chatrelay.observability import hash_user_id, logger

router = APIRouter(prefix="/v1/me", tags=["me"], route_class=DeferredRoute)


@router.delete("/data", status_code=204, responses={401: {"model": ErrorBody}})
async def delete_my_data(user_id: UserId, services: ServicesDep) -> Response:
    """Delete every conversation, turn, refresh token and quota counter of the caller.

    Access tokens already issued stay valid until they expire (they are not
    stored); refresh tokens stop working at once. Repeating the call is safe."""
    removed = await services.store.delete_user_data(user_id)
    logger.info("user data deleted", extra={"user": hash_user_id(user_id), "items": removed})
    return Response(status_code=204)
