"""The caller's identity, from ``Authorization: Bearer <token>`` only.

The dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool,
a thread hand-off per request (before the upstream request is sent) for work that takes
microseconds (a dict lookup, an HMAC check of the token).
"""

# No `from __future__ import annotations`: pydantic and FastAPI would evaluate each string annotation
# (a compile and an eval each) when the models and routes are built at start-up.

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chatrelay import errors
from chatrelay.api.services import Services, get_services

_bearer = HTTPBearer(auto_error=False, description="A token from POST /v1/auth/dev (local) or the login route.")


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    services: Annotated[Services, Depends(get_services)],
) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise errors.Unauthorized("a bearer token is required")
    user_id = services.tokens.verify(credentials.credentials)
    request.state.user_id = user_id
    return user_id


UserId = Annotated[str, Depends(current_user)]
ServicesDep = Annotated[Services, Depends(get_services)]
