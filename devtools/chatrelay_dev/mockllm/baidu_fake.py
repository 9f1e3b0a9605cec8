"""A local fake of Baidu ERNIE v1 (wenxinworkshop) and its access-token endpoint.

* ``GET|POST /oauth/2.0/token?grant_type=client_credentials&client_id=AK&client_secret=SK``
  → ``{access_token, expires_in, refresh_token, scope, session_key, session_secret}``;
  a wrong pair → 401 ``{"error": "invalid_client", "error_description": ...}``.
* ``POST /rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{model}?access_token=...`` streams
  ``data: {"id","object":"chat.completion","created","sentence_id","is_end",
  "is_truncated","result","need_clear_history","finish_reason","usage"}`` events, the
  last with ``is_end: true``. Every error is Baidu's: HTTP **200** with a plain JSON
  body ``{"error_code", "error_msg"}`` and no SSE framing — 110 for an unknown token,
  111 for an expired one, 336006 for an even number of messages, 336003 for a role
  other than user/assistant (ERNIE v1 takes ``system`` as a top-level field).

Knobs (every fake's, see ``common.py``, but ``reasoning`` and ``keepalive``), ``error_code``
(answer that code), ``fault`` = ``http_429`` (336501 Rpm limit)
| ``qps_limit`` (18) | ``http_500`` (336000) | ``http_401`` (110) | ``cut`` | ``stall`` |
``malformed``. Server-side only: ``api_key``/``secret_key`` (the pair the token
endpoint accepts), ``token_ttl``. ``POST /_mock/expire_tokens`` expires every issued
token (the next chat gets 111); ``GET /_mock/tokens`` counts token requests.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chatrelay_dev.mockllm.common import Fake, MockConfig, outcome, prompt_tokens

FAULTS = {"none", "http_429", "qps_limit", "http_500", "http_401", "cut", "stall", "malformed"}
ERROR_MESSAGES = {
    4: "Open api request limit reached",
    17: "Open api daily request limit reached",
    18: "Open api qps request limit reached",
    110: "Access token invalid or no longer valid",
    111: "Access token expired",
    336000: "Internal error",
    336002: "Invalid JSON",
    336003: "message role must be user or assistant",
    336006: "the length of messages must be an odd number",
    336100: "try again later",
    336501: "Rpm limit reached",
    336502: "Tpm limit reached",
}
_FAULT_CODES = {"http_429": 336501, "qps_limit": 18, "http_500": 336000, "http_401": 110}
_STREAM_FAULTS = {"malformed": b'data: {"id": "as-broken", "result": \n\n'}


@dataclass(frozen=True)
class BaiduFakeConfig(MockConfig):
    error_code: int = 0
    """Answer this ERNIE error code (HTTP 200, plain JSON) instead of streaming."""
    secret_key: str = ""
    token_ttl: int = 2592000


def _error(code: int, log_id: str) -> JSONResponse:
    return JSONResponse({"error_code": code, "error_msg": ERROR_MESSAGES.get(code, "error"), "id": log_id})


class BaiduFake(Fake):
    config_class = BaiduFakeConfig

    def __init__(self, config: MockConfig | None = None, history: int = 500) -> None:
        super().__init__(config, history)
        self.tokens: dict[str, float] = {}
        self.token_requests = 0

    def routes(self) -> list[Route]:
        return [
            Route("/oauth/2.0/token", self.token, methods=["GET", "POST"]),
            Route("/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{model}", self.chat, methods=["POST"]),
            Route("/_mock/expire_tokens", self.expire_tokens, methods=["POST"]),
            Route("/_mock/tokens", self.token_stats, methods=["GET"]),
        ]

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        query = request.query_params
        config: BaiduFakeConfig = self.config  # type: ignore[assignment]
        if query.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type",
                                 "error_description": "The authorization grant type is not supported"}, 400)
        if config.api_key and query.get("client_id") != config.api_key:
            return JSONResponse({"error": "invalid_client", "error_description": "unknown client id"}, 401)
        if config.secret_key and query.get("client_secret") != config.secret_key:
            return JSONResponse({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
        token = f"24.{secrets.token_hex(16)}.{config.token_ttl}.{int(time.time())}.{self.token_requests}-mock"
        self.tokens[token] = time.monotonic() + config.token_ttl
        return JSONResponse({
            "refresh_token": f"25.{secrets.token_hex(16)}", "expires_in": config.token_ttl,
            "session_key": secrets.token_hex(8), "access_token": token,
            "scope": "public brain_all_scope wenxinworkshop_mgr", "session_secret": secrets.token_hex(8),
        })

    async def expire_tokens(self, request: Request) -> Response:
        for token in self.tokens:
            self.tokens[token] = 0.0
        return JSONResponse({"expired": len(self.tokens)})

    async def token_stats(self, request: Request) -> Response:
        return JSONResponse({"requests": self.token_requests, "issued": len(self.tokens)})

    async def chat(self, request: Request) -> Response:
        log_id = f"as-mock{next(self._ids):06d}"
        token = request.query_params.get("access_token", "")
        if token not in self.tokens:
            return _error(110, log_id)
        if time.monotonic() >= self.tokens[token]:
            return _error(111, log_id)
        try:
            body = await request.json()
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            return _error(336002, log_id)
        problem = _check_messages(messages)
        if problem:
            return _error(problem, log_id)
        config = self.knobs(messages)
        model = request.path_params["model"]
        record = self.log(config, id=log_id, model=model, body=body)
        code = getattr(config, "error_code", 0) or _FAULT_CODES.get(config.fault, 0)
        if code:
            record["outcome"] = f"error_{code}"
            return _error(code, log_id)
        usage_in = prompt_tokens(str(body.get("system") or ""), *(str(m.get("content", "")) for m in messages))
        if not body.get("stream"):
            await asyncio.sleep(config.ttft)
            record["outcome"] = "complete"
            return JSONResponse({
                "id": log_id, "object": "chat.completion", "created": int(time.time()),
                "result": "".join(config.pieces()), "is_truncated": False, "need_clear_history": False,
                "finish_reason": "normal",
                "usage": {"prompt_tokens": usage_in, "completion_tokens": config.tokens,
                          "total_tokens": usage_in + config.tokens},
            })
        return StreamingResponse(self._stream(config, log_id, usage_in, record), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _stream(self, config: MockConfig, log_id: str, usage_in: int, record: dict) -> AsyncIterator[bytes]:
        created = int(time.time())
        last = len(config.pieces()) - 1

        def event(position: int, piece: str, *, is_end: bool = False, sent: int | None = None) -> bytes:
            sent = position + 1 if sent is None else sent
            data = {
                "id": log_id, "object": "chat.completion", "created": created, "sentence_id": position,
                "is_end": is_end or position == last, "is_truncated": False, "result": piece,
                "need_clear_history": False, "finish_reason": "normal",
                "usage": {"prompt_tokens": usage_in, "completion_tokens": sent, "total_tokens": usage_in + sent},
            }
            return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

        tail = [] if last >= 0 else [event(0, "", is_end=True, sent=0)]  # an empty answer still ends
        with outcome(record):
            await asyncio.sleep(config.ttft)
            async for data in self.content(config, record, event, _STREAM_FAULTS, tail):
                yield data


def _check_messages(messages: Any) -> int | None:
    if not isinstance(messages, list) or not messages:
        return 336006
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role != ("user" if i % 2 == 0 else "assistant"):
            return 336003
    if len(messages) % 2 == 0:
        return 336006
    return None


def create_baidu_fake(config: MockConfig | None = None) -> Starlette:
    return BaiduFake(config).app()
