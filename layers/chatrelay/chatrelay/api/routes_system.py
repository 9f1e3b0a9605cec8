"""Health, models, the local-only dev login, and Lambda Web Adapter's SnapStart hooks."""

# No `from __future__ import annotations`: pydantic and FastAPI would evaluate each string annotation
# (a compile and an eval each) when the models and routes are built at start-up.

from fastapi import APIRouter, FastAPI, Response

from chatrelay import errors, snapshot
from chatrelay.api.deferred_route import DeferredRoute
from chatrelay.api.schemas import DevLoginRequest, ErrorBody
from chatrelay.api.security import ServicesDep, UserId

router = APIRouter(tags=["system"], route_class=DeferredRoute)


@router.get("/healthz")
async def healthz():
    """Readiness for Lambda Web Adapter: cheap, touches no dependency."""
    return {"status": "ok"}


@router.get("/v1/models", responses={401: {"model": ErrorBody}})
async def list_models(user_id: UserId, services: ServicesDep):
    """The presets a request may name (``model`` / ``largeModel``, any case), their aliases, and the
    same names as OpenAI's model list (``data``), so ``client.models.list()`` works too."""
    registry = services.registry
    aliases: dict[str, list[str]] = {}
    for alias, name in registry.aliases.items():
        aliases.setdefault(name, []).append(alias)
    return {
        "default": services.settings.default_model,
        "models": registry.names,
        "aliases": aliases,
        "object": "list",
        "data": [{"id": name, "object": "model", "owned_by": "chatrelay", "aliases": aliases.get(name, [])}
                 for name in registry.names],
    }


@router.post("/v1/auth/dev", responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def dev_login(body: DevLoginRequest, services: ServicesDep):
    """Local development and tests only (``CHATRELAY_DEV_AUTH=1``): a token for any user id."""
    if not services.settings.dev_auth:
        raise errors.NotFound("not found")
    token = services.tokens.issue(body.user_id)
    return {"token": token, "tokenType": "Bearer", "expiresIn": services.tokens.ttl_seconds}


async def _before_snapshot() -> Response:
    await snapshot.before_snapshot()
    return Response(status_code=204)


async def _after_restore() -> Response:
    await snapshot.after_restore()
    return Response(status_code=204)


def add_snapstart_hooks(app: FastAPI, before_path: str | None, after_path: str | None) -> None:
    """The paths Lambda Web Adapter POSTs to around a SnapStart snapshot (chatrelay/snapshot.py).

    Served only when configured (``AWS_LWA_SNAPSTART_*_PATH``), outside the API schema; the
    adapter answers outside requests for them with 403 before they reach the app.
    """
    for path, endpoint in ((before_path, _before_snapshot), (after_path, _after_restore)):
        if path:
            app.add_api_route(path, endpoint, methods=["POST"], include_in_schema=False, status_code=204)
