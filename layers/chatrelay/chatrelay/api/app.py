"""The FastAPI application: one app for every entry point (uvicorn, LWA, Mangum)."""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from chatrelay import __version__, errors, snapshot
from chatrelay.api import routes_auth, routes_history, routes_me, routes_requests, routes_system
from chatrelay.api.deferred_route import BuiltBeforeSnapshot, mount
from chatrelay.api.fast_route import FastDispatch
from chatrelay.api.limits import RequestLimitsMiddleware
from chatrelay.api.middleware import ChatRelayAPI, RequestContextMiddleware
from chatrelay.api.services import Services
from chatrelay.observability import logger
from chatrelay.settings import Settings, get_settings


def _openai_shape(status: int, code: str, message: str, extra: dict[str, object]) -> dict[str, object]:
    from chatrelay.streaming.openai_chunks import error_body as openai_error_body

    field = extra.get("field")
    return openai_error_body(status, code, message, field if isinstance(field, str) else None)


# Surfaces that promise another client's error shape, by path (added with their routes);
# everything else gets {code, message}.
ERROR_SHAPES: dict = {}


def error_body(path: str, status: int, code: str, message: str, extra: dict[str, object]) -> dict[str, object]:
    """An error's body in the shape the route at ``path`` promises (also for the request limits'
    refusals, which are sent before routing)."""
    shape = ERROR_SHAPES.get(path)
    return shape(status, code, message, extra) if shape else {"code": code, "message": message, **extra}


def _error(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: object
) -> JSONResponse:
    extra = {k: v for k, v in extra.items() if v is not None}
    body = error_body(request.url.path, status, code, message, extra)
    headers = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if status == 401 else {})}
    return JSONResponse(body, status_code=status, headers=headers or None)


def _field_of(error: dict) -> str:
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    return ".".join(loc) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.ChatRelayError)
    async def _chatrelay_error(request: Request, exc: errors.ChatRelayError) -> JSONResponse:
        if exc.status_code >= 500:
            logger.error("request failed", extra={"error_code": exc.code, "path": request.url.path})
        # Retry-After for 429/503 errors that carry one (quotas, WeChat busy).
        return _error(request, exc.status_code, headers=getattr(exc, "headers", None), **exc.to_dict())  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"field": _field_of(e), "message": e.get("msg", "")} for e in exc.errors()]
        first = details[0] if details else {"field": "body", "message": "invalid"}
        return _error(request, 422, "invalid_request", f"{first['field']}: {first['message']}", field=first["field"],
                      errors=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read the body (not UTF-8, say): like bad JSON
            return _error(request, 422, "invalid_request", f"body: {exc.detail}", field="body")
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return _error(request, exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"path": request.url.path})
        return _error(request, 500, "internal_error", "internal error")


def warn_if_dev_auth(settings: Settings) -> None:
    """Dev login issues a token for any user id: say so loudly unless this is ``make dev``."""
    if settings.dev_auth and not settings.dev_stack:
        logger.warning(
            "DEV LOGIN IS ON: POST /v1/auth/dev issues a token for ANY user id without a password "
            "(CHATRELAY_DEV_AUTH=1). Never enable it outside local development and tests.",
            extra={"dev_auth": True},
        )


def create_app(settings: Settings | None = None, services: Services | None = None, *,
               streaming: bool = True) -> FastAPI:
    """The app with every route; ``streaming=False`` leaves out the routes that answer with a
    stream (``/v1/chat/stream``, the resume stream, the OpenAI-compatible and AI SDK routes),
    for the buffered API function: API Gateway never sends them there (template.yaml), and
    Mangum could not stream them anyway."""
    settings = settings or get_settings()
    warn_if_dev_auth(settings)
    services = services or Services.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        from chatrelay.streaming.relay import drain_detached  # not at start-up: the API function never streams

        await drain_detached()
        await services.aclose()

    app = ChatRelayAPI(
        title="chatrelay",
        version=__version__,
        description="Streams LLM answers as SSE and keeps every chat turn in DynamoDB.",
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    # Innermost: skips FastAPI's routing for the stream routes, once it has routed them (fast_route.py).
    app.add_middleware(FastDispatch)
    # Inside the request context (so refusals are logged), outside everything else.
    app.add_middleware(RequestLimitsMiddleware, max_body_bytes=settings.max_body_bytes,
                       max_json_depth=settings.max_json_depth, body_read_timeout=settings.body_read_timeout,
                       error_body=error_body)
    app.add_middleware(RequestContextMiddleware, trust_lambda_context=settings.trust_lambda_context)
    # Each route is built by the first request it answers (api/deferred_route.py).
    mount(app, routes_system.router)
    if streaming:  # imported only where they are served
        from chatrelay.api import routes_chat, routes_openai, routes_ui

        mount(app, routes_chat.router)
        mount(app, routes_openai.router)
        mount(app, routes_ui.router)
        ERROR_SHAPES[routes_openai.PATH] = _openai_shape
        services.registry.import_adapters()  # at start-up, not in a first turn's time to first token
    mount(app, routes_history.router)
    mount(app, routes_requests.router)
    mount(app, routes_auth.router)
    mount(app, routes_me.router)
    routes_system.add_snapstart_hooks(app, settings.snapstart_before_path, settings.snapstart_after_path)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Conversation-Id"],
            expose_headers=["X-Conversation-Id", "X-Message-Id", "Retry-After", "x-vercel-ai-ui-message-stream"],
            max_age=600,
        )
    h5 = Path(settings.h5_dir) if settings.h5_dir else None
    if settings.serve_h5 and h5 is not None and (h5 / "index.html").is_file():
        from chatrelay.api.h5 import mount_h5

        mount_h5(app, h5)
    return app


def create_entry_app(*, streaming: bool = True) -> FastAPI:
    """The app of an entry point (uvicorn, Lambda Web Adapter, Mangum), built from the environment.

    Everything built at start-up (the app, its routes, models, clients) lives as long as the
    process: ``gc.freeze()`` moves it out of the collector's generations, so the full
    collections that streaming triggers scan only what requests allocate (shorter pauses,
    a lower tail latency; bench/results/report.md). No ``gc.collect()`` first: start-up
    leaves no cyclic garbage (a collection here found none, and cost ~20 ms of every cold
    start). The entry points turn the collector off while they import; it is on again here.

    The process-wide services are registered for SnapStart (chatrelay/snapshot.py): closed
    before a snapshot, rebuilt after each restore; the routes are built before it.
    """
    app = create_app(streaming=streaming)
    snapshot.register(app.state.services)
    snapshot.register(BuiltBeforeSnapshot(app.routes))
    gc.freeze()
    gc.enable()
    return app
