"""Routes that build FastAPI's per-route state when first used, not when they are declared.

An ``APIRoute`` does most of its work in its constructor: it inspects the endpoint's signature
and each dependency's, builds a pydantic ``TypeAdapter`` per parameter and per documented
response, and wraps the request handler. Declared at import (``@router.get``), that is about
0.8 ms a route, 16 ms for the app's 19 routes, all of it in every cold start before the first
byte, although a cold instance's first request needs one route (bench/results/report.md).

A :class:`DeferredRoute` keeps its constructor's arguments and sets at once only what routing
reads to *match* a request (path, its compiled pattern and convertors, name, methods), so
Starlette routes requests exactly as before. Anything else (``dependant``, ``body_field``,
``app`` to handle the request, the fields the OpenAPI schema is made of) is looked up through
``__getattr__``, which finishes the route with FastAPI's own constructor the first time. So the
route that answers a request is built by that request; ``app.openapi()`` builds all of them,
and :func:`build_all` does so on purpose: before a SnapStart snapshot (:class:`BuiltBeforeSnapshot`),
and in tests, to fail early on a bad route.

:func:`mount` adds a router's routes to the app. ``app.include_router`` would not do: FastAPI
(0.165) serves an included router through a copy of each of its routes, built with FastAPI's
constructor again when the router first matches a request, which would build every deferred
route it reads from and, even without them, costs a cold instance's first chat 3.4 ms for its
router's two routes. The route modules declare their routes on an ``APIRouter`` as usual (its
prefix, tags and responses are applied when they are declared); :func:`mount` adds each to the
app's own router with ``add_api_route``, as a new deferred route of this app (dependency
overrides are the app's), so every app built from the same modules has its own routes.
"""

import warnings
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, compile_path, get_name

# FastAPI builds each parameter's TypeAdapter over Annotated[Model, Body(alias="body")] with this
# pydantic warning silenced (fastapi/_compat/v2.py: the alias is deliberate). Over a model that
# defers its build (the routes' request models: built with their route), the adapter is built on
# first use instead, outside that silence; the warning would reach the logs for nothing.
warnings.filterwarnings("ignore", message="The 'alias' attribute with value 'body' was provided", module="pydantic")


class DeferredRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        # Only what matching a request reads; the same values APIRoute would set.
        self.path = path
        self.endpoint = endpoint
        name = options.get("name")
        self.name = get_name(endpoint) if name is None else name
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)
        self.methods = {method.upper() for method in options.get("methods") or ["GET"]}
        self.include_in_schema = options.get("include_in_schema", True)
        if "form_limits" not in options:
            self.form_limits = {}  # APIRoute's value without limits (read when a router includes the route)
        self.declared = (path, endpoint, options)
        """The constructor's arguments (:func:`mount` declares the route again from them)."""
        self.built = False

    def build(self) -> None:
        """Run FastAPI's constructor now (at most once)."""
        if not self.built:
            self.built = True
            path, endpoint, options = self.declared
            super().__init__(path, endpoint, **options)

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes not set yet: those the constructor sets.
        if name.startswith("__") or self.__dict__.get("built", True):
            raise AttributeError(name)
        self.build()
        return getattr(self, name)


def mount(app: FastAPI, router: APIRouter) -> None:
    """Serve ``router``'s routes from ``app`` (``app.include_router(router)`` without a prefix
    or other options), each a deferred route of ``app``'s."""
    for route in router.routes:
        if not isinstance(route, DeferredRoute):
            raise TypeError(f"{route!r}: declare it on an APIRouter(route_class=DeferredRoute)")
        path, endpoint, options = route.declared
        # The router's prefix, tags and responses are in these options already; the app adds its
        # own dependency overrides (add_api_route sets them).
        options = {name: value for name, value in options.items() if name != "dependency_overrides_provider"}
        app.router.add_api_route(path, endpoint, route_class_override=type(route), **options)


def build_all(routes: Iterable[BaseRoute]) -> None:
    """Finish every deferred route of ``routes`` (an app's: :func:`mount` adds them flat)."""
    for route in routes:
        if isinstance(route, DeferredRoute):
            route.build()


class BuiltBeforeSnapshot:
    """Registered with ``chatrelay.snapshot`` by the entry points: with SnapStart, every route is
    built once, into the snapshot, instead of by the first requests of each restored copy."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._routes = routes

    async def before_snapshot(self) -> None:
        build_all(self._routes)

    async def after_restore(self) -> None:
        pass
