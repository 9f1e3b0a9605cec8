"""Serves the H5 chat page (``clients/h5``) as static files at ``/``.

The page is mounted last, after every API route, so ``/v1/...`` and ``/healthz`` never
reach it. Only the static responses get the page's security headers: a strict CSP
without inline script, ``nosniff`` and ``no-referrer``. The files are plain ES modules
without hashed names, so they are revalidated on every load (``no-cache`` + ETag / 304)
and a deployment is never hidden behind a stale cached module.
"""

from __future__ import annotations

from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class SecuredStatic:
    """ASGI wrapper adding fixed headers to every response of the wrapped app."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_h5(app, directory: str | Path, *, headers: dict[str, str] | None = None) -> None:
    """Mount the page's files at ``/``; call after the API routers are included."""
    static = StaticFiles(directory=str(directory), html=True)
    app.mount("/", SecuredStatic(static, {**SECURITY_HEADERS, **(headers or {})}), name="h5")
