"""A local fake of the WeChat server API, faithful on the wire for the calls chatrelay makes.

    GET  /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code
         -> {"openid", "session_key", "unionid"}  or  {"errcode", "errmsg"}
    GET  /cgi-bin/token?grant_type=client_credential&appid&secret
         -> {"access_token", "expires_in"}        or  {"errcode", "errmsg"}
    POST /wxa/msg_sec_check?access_token=...   {"version": 2, "openid", "scene", "content"}
         -> {"errcode": 0, "errmsg": "ok", "result": {"suggest", "label"}, "detail": [...], "trace_id"}

As WeChat does, every answer is HTTP 200 and errors are ``errcode``/``errmsg``
bodies; jscode2session answers with ``Content-Type: text/plain`` (configurable),
the others with JSON.

Codes: any code ``<who>`` or ``<who>.<anything>`` logs in the user ``<who>`` (the
same openid every time, as a real user's successive ``wx.login`` codes do); each
code works once (a reused one answers 40163). Special codes trigger the errcodes:
``invalid`` 40029, ``rate-limited`` 45011, ``high-risk`` 40226, ``busy`` -1.

Content: text containing one of ``risky_words`` is ``risky`` (label 20006), one of
``review_words`` ``review`` (label 21000), else ``pass`` (label 100). Only openids
this fake issued are accepted (others: 40003), as WeChat accepts only its app's
recently active users.

Test hooks: ``POST /_mock/wechat/expire-tokens`` makes every issued access token
answer 42001 (expired); ``GET /_mock/wechat/requests`` lists the calls (secrets
redacted), ``DELETE /_mock/wechat/requests`` forgets them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SPECIAL_CODES = {"invalid": 40029, "rate-limited": 45011, "high-risk": 40226, "busy": -1}
_ERRMSG = {
    40029: "invalid code",
    40163: "code been used",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    40226: "high risk user",
    -1: "system error",
    40013: "invalid appid",
    40125: "invalid appsecret",
    40001: "invalid credential, access_token is invalid or not latest",
    42001: "access_token expired",
    40003: "invalid openid",
    47001: "data format error",
}
RISKY_LABEL = 20006
REVIEW_LABEL = 21000
PASS_LABEL = 100
MAX_CONTENT_CHARS = 2500


@dataclass(frozen=True)
class WeChatFakeConfig:
    app_id: str = "wx0123456789abcdef"
    app_secret: str = "fake-app-secret-0123456789abcdef"
    risky_words: tuple[str, ...] = ("forbidden-word",)
    review_words: tuple[str, ...] = ()
    token_ttl: int = 7200
    plain_text: bool = True
    """Answer jscode2session with ``Content-Type: text/plain``, as WeChat does at times."""


def openid_for(app_id: str, who: str) -> str:
    """The 28-character openid the fake gives user ``who`` of app ``app_id``."""
    digest = hashlib.sha256(f"{app_id}\0{who}".encode()).digest()
    return "o" + base64.urlsafe_b64encode(digest).decode()[:27]


class WeChatFake:
    def __init__(self, config: WeChatFakeConfig | None = None, history: int = 1000) -> None:
        self.config = config or WeChatFakeConfig()
        self.requests: deque[dict[str, Any]] = deque(maxlen=history)
        self.used_codes: set[str] = set()
        self.openids: set[str] = set()
        self.tokens: dict[str, bool] = {}  # access token -> still valid

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/sns/jscode2session", self.jscode2session, methods=["GET"]),
            Route("/cgi-bin/token", self.token, methods=["GET"]),
            Route("/wxa/msg_sec_check", self.msg_sec_check, methods=["POST"]),
            Route("/_mock/wechat/expire-tokens", self.expire_tokens, methods=["POST"]),
            Route("/_mock/wechat/requests", self.list_requests, methods=["GET", "DELETE"]),
        ])

    # ---- helpers -----------------------------------------------------------

    def _record(self, request: Request, **extra: Any) -> dict[str, Any]:
        params = {k: ("***" if k in ("secret", "access_token") else v) for k, v in request.query_params.items()}
        record = {"path": request.url.path, "params": params, **extra}
        self.requests.append(record)
        return record

    @staticmethod
    def _rid() -> str:
        return secrets.token_hex(4) + "-" + secrets.token_hex(4) + "-" + secrets.token_hex(4)

    def _error(self, errcode: int, *, plain: bool = False) -> Response:
        body = {"errcode": errcode, "errmsg": f"{_ERRMSG.get(errcode, 'error')} rid: {self._rid()}"}
        return self._answer(body, plain=plain)

    @staticmethod
    def _answer(body: dict[str, Any], *, plain: bool = False) -> Response:
        if plain:
            return Response(json.dumps(body), media_type="text/plain")
        return JSONResponse(body)

    def _bad_app(self, request: Request) -> int | None:
        if request.query_params.get("appid") != self.config.app_id:
            return 40013
        if request.query_params.get("secret") != self.config.app_secret:
            return 40125
        return None

    # ---- the API -----------------------------------------------------------

    async def jscode2session(self, request: Request) -> Response:
        plain = self.config.plain_text
        code = request.query_params.get("js_code", "")
        record = self._record(request, code=code)
        bad = self._bad_app(request)
        if bad is None and request.query_params.get("grant_type") != "authorization_code":
            bad = 47001
        if bad is None and (not code or code in SPECIAL_CODES):
            bad = SPECIAL_CODES.get(code, 40029)
        if bad is None and code in self.used_codes:
            bad = 40163
        if bad is not None:
            record["errcode"] = bad
            return self._error(bad, plain=plain)
        self.used_codes.add(code)
        who = code.split(".", 1)[0]
        openid = openid_for(self.config.app_id, who)
        self.openids.add(openid)
        record["openid"] = openid
        body = {
            "session_key": base64.b64encode(secrets.token_bytes(16)).decode(),
            "openid": openid,
            "unionid": "u" + openid[1:],
        }
        return self._answer(body, plain=plain)

    async def token(self, request: Request) -> Response:
        record = self._record(request)
        bad = self._bad_app(request)
        if bad is None and request.query_params.get("grant_type") != "client_credential":
            bad = 47001
        if bad is not None:
            record["errcode"] = bad
            return self._error(bad)
        token = "fake-at-" + secrets.token_urlsafe(24)
        self.tokens[token] = True
        return JSONResponse({"access_token": token, "expires_in": self.config.token_ttl})

    async def msg_sec_check(self, request: Request) -> Response:
        token = request.query_params.get("access_token", "")
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        record = self._record(request, body=body)
        if token not in self.tokens:
            record["errcode"] = 40001
            return self._error(40001)
        if not self.tokens[token]:
            record["errcode"] = 42001
            return self._error(42001)
        if (not isinstance(body, dict) or str(body.get("version")) != "2" or body.get("scene") not in (1, 2, 3, 4)
                or not isinstance(body.get("content"), str) or len(body["content"]) > MAX_CONTENT_CHARS):
            record["errcode"] = 47001
            return self._error(47001)
        if body.get("openid") not in self.openids:
            record["errcode"] = 40003
            return self._error(40003)
        content = body["content"].casefold()
        risky = next((w for w in self.config.risky_words if w.casefold() in content), None)
        review = next((w for w in self.config.review_words if w.casefold() in content), None)
        if risky:
            suggest, label, keyword = "risky", RISKY_LABEL, risky
        elif review:
            suggest, label, keyword = "review", REVIEW_LABEL, review
        else:
            suggest, label, keyword = "pass", PASS_LABEL, None
        keyword_detail: dict[str, Any] = {"strategy": "keyword", "errcode": 0}
        if keyword:
            keyword_detail.update(suggest=suggest, label=label, level=90, keyword=keyword)
        record["suggest"] = suggest
        return JSONResponse({
            "errcode": 0,
            "errmsg": "ok",
            "result": {"suggest": suggest, "label": label},
            "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label,
                        "prob": 90 if keyword else 0}, keyword_detail],
            "trace_id": self._rid(),
        })

    # ---- test hooks --------------------------------------------------------

    async def expire_tokens(self, request: Request) -> Response:
        for token in self.tokens:
            self.tokens[token] = False
        return JSONResponse({"expired": len(self.tokens)})

    async def list_requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.requests.clear()
            return Response(status_code=204)
        return JSONResponse(list(self.requests))


def create_wechat_fake(config: WeChatFakeConfig | None = None) -> Starlette:
    fake = WeChatFake(config)
    app = fake.app()
    app.state.fake = fake
    return app
