"""``POST /v1/auth/wechat``: log in with a ``wx.login()`` code; ``POST /v1/auth/refresh``: renew.

Both answer a token pair: a short-lived access token (the JWT every ``/v1`` route
takes) and an opaque refresh token, rotated on each use (``auth/refresh.py``).
The user id is ``wx:<openid>``; WeChat's session key is never stored or returned.
"""

# No `from __future__ import annotations`: pydantic and FastAPI would evaluate each string annotation
# (a compile and an eval each) when the models and routes are built at start-up.

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from chatrelay import errors
from chatrelay.api.deferred_route import DeferredRoute
from chatrelay.api.schemas import ErrorBody
from chatrelay.api.security import ServicesDep
from chatrelay.api.services import Services
from chatrelay.observability import hash_user_id, logger

router = APIRouter(prefix="/v1/auth", tags=["auth"], route_class=DeferredRoute)


class WeChatLoginRequest(BaseModel):
    # Built with its route, by the route's first request (api/deferred_route.py), not at start-up.
    model_config = ConfigDict(defer_build=True)

    code: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$", description="From wx.login().")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, defer_build=True)

    refresh_token: str = Field(alias="refreshToken", min_length=1, max_length=512)


class TokenPair(BaseModel):
    model_config = ConfigDict(populate_by_name=True, defer_build=True)

    token: str = Field(description="Access token: `Authorization: Bearer <token>`.")
    token_type: Literal["Bearer"] = Field("Bearer", alias="tokenType")
    expires_in: int = Field(alias="expiresIn", description="Seconds the access token is valid.")
    refresh_token: str = Field(alias="refreshToken", description="For POST /v1/auth/refresh; single use.")
    refresh_expires_in: int = Field(alias="refreshExpiresIn")


def _errors(*statuses: int) -> dict[int | str, dict]:
    return {status: {"model": ErrorBody} for status in statuses}


async def _pair(services: Services, user_id: str, refresh_token: str | None = None) -> TokenPair:
    assert services.refresh_tokens is not None
    if refresh_token is None:
        refresh_token = await services.refresh_tokens.issue(user_id)
    return TokenPair(
        token=services.tokens.issue(user_id),
        expires_in=services.tokens.ttl_seconds,
        refresh_token=refresh_token,
        refresh_expires_in=services.refresh_tokens.ttl_seconds,
    )


@router.post("/wechat", response_model=TokenPair, responses=_errors(401, 403, 404, 422, 429, 502, 503))
async def wechat_login(body: WeChatLoginRequest, services: ServicesDep) -> TokenPair:
    """Trade a `wx.login()` code for a token pair (404 when WeChat login is not configured).

    WeChat's refusals map to `wechat_code_invalid` (401: get a new code),
    `wechat_user_blocked` (403), `wechat_rate_limited` (429, Retry-After) and
    `wechat_busy` (503, Retry-After)."""
    if services.wechat is None:
        raise errors.NotFound("WeChat login is not configured")
    identity = await services.wechat.code_to_session(body.code)
    pair = await _pair(services, identity.user_id)
    logger.info("wechat login", extra={"user": hash_user_id(identity.user_id)})
    return pair


@router.post("/refresh", response_model=TokenPair, responses=_errors(401, 422))
async def refresh(body: RefreshRequest, services: ServicesDep) -> TokenPair:
    """Trade a refresh token for a new pair. Each refresh token works once: presenting
    one again (a replay) revokes its whole family, and the client logs in again."""
    assert services.refresh_tokens is not None
    user_id, refresh_token = await services.refresh_tokens.rotate(body.refresh_token)
    return await _pair(services, user_id, refresh_token)
