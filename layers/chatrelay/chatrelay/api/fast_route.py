"""Routes whose usual request skips FastAPI's per-request machinery.

The stream routes pay everything they do before the upstream request in added time to first
token, and FastAPI's handler (dependency solving, parameter extraction, body validation) was the
largest part of it (about 0.3 ms of the stream route's 0.8 ms, measured in process). A :func:`fast_route` is
still a whole ``APIRoute`` (its OpenAPI operation is FastAPI's, from the endpoint's signature),
but each request first goes to the route's *fast parser*: a few lines that read exactly the
parameters the endpoint declares, the way FastAPI would, and call the endpoint. When anything is
not the plain case (no or a bad token, a body that is not ``application/json`` or does not
validate, a repeated or unknown-valued parameter, dependency overrides), the parser declines
(:data:`DECLINE`) and FastAPI's own handler runs instead, so every refusal keeps FastAPI's
order and shape: the fast path only ever answers requests FastAPI would have passed to the
endpoint with the same arguments.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from chatrelay import errors
from chatrelay.api import limits
from chatrelay.api.deferred_route import DeferredRoute
from chatrelay.api.services import Services

DECLINE: Any = object()
"""What a fast parser returns for a request it leaves to FastAPI."""

FastParser = Callable[[Request], Awaitable[Any]]
"""Reads the request and returns the endpoint's result (awaited), or :data:`DECLINE`."""

Model = TypeVar("Model", bound=BaseModel)


def fast_route(parser: FastParser) -> type[APIRoute]:
    """An ``APIRoute`` class (for ``route_class_override``) that tries ``parser`` first."""

    class FastRoute(DeferredRoute):
        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            slow = super().get_route_handler()

            async def handler(request: Request) -> Response:
                dispatch = request.scope.get(_DISPATCH)
                if dispatch is not None:
                    dispatch.learn(request.scope, parser)
                # Overridden dependencies (tests) are FastAPI's to resolve.
                if not request.app.dependency_overrides:
                    result = await parser(request)
                    if result is not DECLINE:
                        return result
                return await slow(request)

            return handler

    return FastRoute


def headers(request: Request, names: Collection[bytes]) -> dict[bytes, str] | None:
    """The first value of each of ``names`` (lower-case), or None if one of them is repeated
    (FastAPI's choice among repeated values is left to FastAPI)."""
    found: dict[bytes, str] = {}
    for name, value in request.scope["headers"]:
        if name in names:
            if name in found:
                return None
            found[name] = value.decode("latin-1")
    return found


def bearer_user(request: Request, authorization: str | None, services: Services) -> str | None:
    """The verified user of ``Authorization: Bearer <token>`` (api/security.py's ``current_user``,
    HTTPBearer's parsing), or None: the slow path then refuses the request as it always has."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if not scheme or not token or scheme.lower() != "bearer":
        return None
    try:
        user_id = services.tokens.verify(token)
    except errors.ChatRelayError:
        return None
    request.state.user_id = user_id
    return user_id


async def json_body(request: Request, content_type: str | None, model: type[Model]) -> Model | None:
    """The body as ``model``, parsed as FastAPI parses it (``json.loads`` of an
    ``application/json`` body, then the model's validation), or None when FastAPI would refuse
    it or read it some other way (another content type, an empty body)."""
    if content_type is None or content_type.partition(";")[0].strip().lower() != "application/json":
        return None
    body = request.scope.get(limits.BODY)  # read already: no second pass through Starlette's stream
    if body is None:
        body = await request.body()  # Starlette keeps it: the slow path reads the same bytes
    if not body:
        return None
    try:
        return model.model_validate(json.loads(body))
    except (ValueError, ValidationError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


async def authorized_json(request: Request, names: Collection[bytes],
                          model: type[Model]) -> tuple[dict[bytes, str], str, Model] | None:
    """The plain case of a JSON route: ``names`` (with ``authorization`` and ``content-type``) each
    sent once, a verified bearer token and a valid ``model`` body; None otherwise (FastAPI's then)."""
    found = headers(request, names)
    if found is None:
        return None
    user_id = bearer_user(request, found.get(b"authorization"), request.app.state.services)
    if user_id is None:
        return None
    body = await json_body(request, found.get(b"content-type"), model)
    return None if body is None else (found, user_id, body)


def query_choice(request: Request, name: str, choices: Collection[str], default: str | None) -> Any:
    """A query parameter typed as a ``Literal`` of ``choices``: its value, ``default`` when absent,
    :data:`DECLINE` when repeated or not one of them."""
    if not request.scope["query_string"]:
        return default
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1 or values[0] not in choices:
        return DECLINE
    return values[0]


_DISPATCH = "chatrelay.fast_dispatch"


class FastDispatch:
    """Pure ASGI, the innermost of the app's own middlewares: a request for a fast route skips
    FastAPI's exception middleware, router and request wrapper (the other large part of the
    stream routes' time before their upstream request, after dependency solving).

    It learns the way there from FastAPI itself: when FastAPI's router hands a request to a fast
    route, the method, path and root path it matched are recorded with the route's parser and the
    exception handlers FastAPI's exception middleware put in the scope. A later request with the
    same method, path and root path (which FastAPI's router resolves to the same route: the fast
    routes have no path parameters) goes to that parser directly, under the same handlers and the
    same wrapper Starlette's request handling uses (``wrap_app_handling_exceptions``), so errors
    are answered as before. What the parser declines, and everything else, goes on to FastAPI,
    its body given again.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: dict[tuple[str, str, str], tuple[FastParser, Any]] = {}

    def learn(self, scope: Scope, parser: FastParser) -> None:
        key = (scope["method"], scope["path"], scope.get("root_path", ""))
        handlers = scope.get("starlette.exception_handlers")
        if handlers is not None and key not in self._routes:
            self._routes[key] = (parser, handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            known = self._routes.get((scope["method"], scope["path"], scope.get("root_path", "")))
            if known is not None and not scope["app"].dependency_overrides:
                await self._direct(known, scope, receive, send)
                return
            scope[_DISPATCH] = self
        await self.app(scope, receive, send)

    async def _direct(self, known: tuple[FastParser, Any], scope: Scope, receive: Receive, send: Send) -> None:
        parser, scope["starlette.exception_handlers"] = known
        request = Request(scope, receive, send)
        declined = False

        async def direct(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal declined
            result = await parser(request)
            if result is DECLINE:
                declined = True  # nothing sent yet: FastAPI answers it
                return
            await result(scope, receive, send)

        await wrap_app_handling_exceptions(direct, request)(scope, receive, send)
        if declined:
            await self.app(scope, limits.replay(await request.body(), receive), send)
