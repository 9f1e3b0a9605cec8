"""The WeChat server API: mini-program login and the app's access token.

Login: the mini-program calls ``wx.login()`` and posts the ``code``; the server
trades it for the user's ``openid`` at ``GET {base}/sns/jscode2session``. The
``session_key`` that comes with it is dropped at once: it is never stored,
returned or logged (chatrelay encrypts nothing with it). The user id is
``wx:<openid>``.

Access token: server-to-server calls such as ``msg_sec_check`` need the app's
``access_token`` (``GET {base}/cgi-bin/token``); it is cached until shortly before
it expires and fetched again once when WeChat answers 40001/42001 (token invalid
or expired), e.g. after another instance fetched a newer one.

WeChat answers errors with HTTP 200 and ``{"errcode", "errmsg"}``, sometimes with
``Content-Type: text/plain``: bodies are parsed as JSON whatever their content type.
Its errors become the service's error tree here (``errors.WeChat*``); httpx errors
never leave this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec

from chatrelay import errors
from chatrelay.observability import logger
from chatrelay.settings import Settings

USER_PREFIX = "wx:"
# openids are 28 URL-safe characters today; allow some room without allowing anything odd.
_OPENID = re.compile(r"\A[A-Za-z0-9_-]{6,64}\Z")  # fullmatch: "$" would allow a final newline

# jscode2session errcodes
CODE_INVALID = 40029
CODE_USED = 40163
RATE_LIMITED = 45011
HIGH_RISK_USER = 40226
BUSY = -1
# access token errcodes: the token we sent is invalid / expired / not the latest
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
_SECRET_PARAMS = ("secret", "js_code", "access_token")


class _RedactCredentials(logging.Filter):
    """httpx logs every request URL at INFO: drop the query of URLs that carry credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redacted(arg) for arg in record.args)
        return True


def _redacted(arg: object) -> object:
    if isinstance(arg, httpx.URL) and any(name in arg.params for name in _SECRET_PARAMS):
        return str(arg.copy_with(query=None)) + "?[redacted]"
    return arg


logging.getLogger("httpx").addFilter(_RedactCredentials())


def user_id_for_openid(openid: str) -> str:
    return f"{USER_PREFIX}{openid}"


def openid_of(user_id: str) -> str | None:
    """The WeChat openid behind a ``wx:<openid>`` user id; None for other users."""
    if not user_id.startswith(USER_PREFIX):
        return None
    openid = user_id[len(USER_PREFIX):]
    return openid if _OPENID.fullmatch(openid) else None


class WeChatIdentity(msgspec.Struct, frozen=True):
    """Who logged in. The session key is deliberately not kept."""

    openid: str
    unionid: str | None = None

    @property
    def user_id(self) -> str:
        return user_id_for_openid(self.openid)


def _seconds_to_next_minute(now: float) -> int:
    return max(1, 60 - int(now) % 60)


class WeChatApi:
    """One app's WeChat server API client; one per process (its httpx client is pooled)."""

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        base_url: str = "https://api.weixin.qq.com",
        timeout: float = 5.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self._secret = app_secret
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._http = client
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0

    @property
    def _client(self) -> httpx.AsyncClient:
        # Opened on the first call, not at start-up (its TLS context costs a cold start ~30 ms).
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 3.0)))
        return self._http

    @property
    def cached_access_token(self) -> str | None:
        """The access token held for reuse, if any (SnapStart: a restored copy must hold none)."""
        return self._token

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    # ---- transport ---------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON body of a WeChat answer, whatever its content type; errcode left to the caller."""
        try:
            response = await self._client.request(method, f"{self._base}{path}", **kwargs)
        except httpx.TimeoutException as exc:
            raise errors.WeChatError("WeChat did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise errors.WeChatError("WeChat could not be reached") from exc
        if response.status_code >= 500:
            raise errors.WeChatBusy(f"WeChat answered HTTP {response.status_code}")
        if response.status_code != 200:
            raise errors.WeChatError(f"WeChat answered HTTP {response.status_code}")
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise errors.WeChatError("WeChat sent a body that is not JSON") from exc
        if not isinstance(body, dict):
            raise errors.WeChatError("WeChat sent an unexpected body")
        return body

    @staticmethod
    def _errcode(body: dict[str, Any]) -> int:
        try:
            return int(body.get("errcode") or 0)
        except (TypeError, ValueError):
            return 0

    # ---- login -------------------------------------------------------------

    async def code_to_session(self, code: str) -> WeChatIdentity:
        """Trade a ``wx.login`` code for the user's openid (jscode2session)."""
        body = await self._request(
            "GET",
            "/sns/jscode2session",
            params={"appid": self.app_id, "secret": self._secret, "js_code": code,
                    "grant_type": "authorization_code"},
        )
        errcode = self._errcode(body)
        if errcode in (CODE_INVALID, CODE_USED):
            raise errors.WeChatCodeInvalid()
        if errcode == RATE_LIMITED:
            raise errors.WeChatRateLimited(retry_after=_seconds_to_next_minute(self._clock()))
        if errcode == HIGH_RISK_USER:
            raise errors.WeChatUserBlocked()
        if errcode == BUSY:
            raise errors.WeChatBusy()
        if errcode:
            logger.error("jscode2session failed", extra={"wechat_errcode": errcode,
                                                         "wechat_errmsg": str(body.get("errmsg", ""))[:200]})
            raise errors.WeChatError("WeChat login failed", errcode=errcode)
        openid = body.get("openid")
        if not isinstance(openid, str) or not _OPENID.fullmatch(openid):
            raise errors.WeChatError("WeChat sent no valid openid")
        unionid = body.get("unionid")
        # body["session_key"] goes out of scope here, unread.
        return WeChatIdentity(openid, unionid if isinstance(unionid, str) else None)

    # ---- access token ------------------------------------------------------

    async def access_token(self, *, stale: str | None = None) -> str:
        """The app's access token, cached until shortly before it expires.

        ``stale``: a token WeChat just refused; it is replaced unless another
        caller has replaced it already (one fetch for many concurrent refusals).
        """
        if self._token and self._token != stale and self._clock() < self._token_expires:
            return self._token
        async with self._token_lock:
            if self._token and self._token != stale and self._clock() < self._token_expires:
                return self._token
            body = await self._request(
                "GET",
                "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self.app_id, "secret": self._secret},
            )
            errcode = self._errcode(body)
            if errcode == BUSY:
                raise errors.WeChatBusy()
            token, expires_in = body.get("access_token"), body.get("expires_in")
            if errcode or not isinstance(token, str) or not token:
                logger.error("access token fetch failed", extra={"wechat_errcode": errcode})
                raise errors.WeChatError("could not get the WeChat access token", errcode=errcode or None)
            lifetime = int(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 7200
            # Refresh a little early: 5 minutes, or half the lifetime of a short-lived token.
            self._token, self._token_expires = token, self._clock() + lifetime - min(300, lifetime // 2)
            self.token_fetches += 1
            return token

    async def post_with_token(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON to ``{base}{path}?access_token=...``; refetches the token once if WeChat refuses it."""
        token = await self.access_token()
        content = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        body = await self._request("POST", path, params={"access_token": token}, content=content, headers=headers)
        if self._errcode(body) in TOKEN_ERRCODES:
            token = await self.access_token(stale=token)
            body = await self._request("POST", path, params={"access_token": token}, content=content, headers=headers)
        return body


def wechat_api_from_settings(settings: Settings) -> WeChatApi | None:
    """The WeChat client when an app id and secret are configured, else None.

    The secret comes from ``CHATRELAY_WECHAT_APP_SECRET`` or, when that is unset,
    from the secret named by ``CHATRELAY_WECHAT_APP_SECRET_NAME`` (``secrets.py``).
    """
    if not settings.wechat_app_id:
        return None
    secret = settings.wechat_app_secret.get_secret_value() if settings.wechat_app_secret else None
    if not secret and settings.wechat_app_secret_name:
        from chatrelay.secrets import resolve_secret

        secret = resolve_secret(settings.wechat_app_secret_name)
    if not secret:
        raise RuntimeError("CHATRELAY_WECHAT_APP_ID is set but no app secret (CHATRELAY_WECHAT_APP_SECRET[_NAME])")
    return WeChatApi(
        app_id=settings.wechat_app_id,
        app_secret=secret,
        base_url=settings.wechat_api_base,
        timeout=settings.wechat_timeout,
    )
