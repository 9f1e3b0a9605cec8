"""Baidu ERNIE v1 (Qianfan "wenxinworkshop") streaming over httpx.

    POST {base}/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{model}?access_token=...

Authentication is an access token from the API key + secret key pair
(``POST {base}/oauth/2.0/token?grant_type=client_credentials&client_id=AK&client_secret=SK``
→ ``{access_token, expires_in}``). The token is cached until shortly before it
expires; a chat answered with error 110/111 (token invalid/expired) gets a fresh
token and is sent once more.

The stream is SSE with one JSON object per event: ``{id, object, created,
sentence_id, is_end, is_truncated, result, need_clear_history, finish_reason?,
usage}``; the event with ``is_end: true`` ends the answer and carries the totals.
Errors are **not** SSE and not an HTTP error status: ``200`` with a plain JSON
body ``{error_code, error_msg}``. They are mapped to the error tree by code:
rate limits (4, 17, 18, 336501, 336502) → ``UpstreamRateLimited``, credentials
(6, 13, 14, 110, 111) → ``UpstreamAuthError``, Baidu-side failures (1, 2, 336000,
336100) → ``UpstreamHTTPError`` as a retryable 5xx, anything else →
``UpstreamHTTPError`` as a 4xx. The vendor's code travels as ``vendorCode``.

ERNIE v1 takes the system prompt as the top-level ``system`` field and wants the
messages to alternate user/assistant, starting and ending with the user.
``finish_reason`` ``normal`` is reported as ``stop``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx

from chatrelay import errors
from chatrelay.providers import http
from chatrelay.providers.base import ChatDelta, ChatMessage, StreamParams, Usage
from chatrelay.providers.messages import alternating, split_system

DEFAULT_BASE_URL = "https://aip.baidubce.com"
TOKEN_PATH = "/oauth/2.0/token"
CHAT_PATH = "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{model}"

RATE_LIMIT_CODES = frozenset({4, 17, 18, 336501, 336502})
AUTH_CODES = frozenset({6, 13, 14, 110, 111})
TOKEN_CODES = frozenset({110, 111})
"""The token itself is bad (invalid / expired): refresh it and try once more."""
SERVER_CODES = frozenset({1, 2, 336000, 336100})


def vendor_error(name: str, body: dict[str, Any]) -> errors.UpstreamError:
    """The error-tree exception for an ERNIE ``{error_code, error_msg}`` body."""
    try:
        code = int(body.get("error_code"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        code = -1
    message = f"{name}: error {code}: {body.get('error_msg') or 'unknown error'}"
    if code in RATE_LIMIT_CODES:
        return errors.UpstreamRateLimited(message, status=429, vendorCode=code)
    if code in AUTH_CODES:
        return errors.UpstreamAuthError(message, status=401, vendorCode=code)
    if code in SERVER_CODES:
        return errors.UpstreamHTTPError(message, status=503, vendorCode=code)
    return errors.UpstreamHTTPError(message, status=400, vendorCode=code)


class AccessTokens:
    """One cached access token for an API key + secret key pair."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        token_url: str,
        api_key: str,
        secret_key: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._client = client
        self._url = token_url
        self._params = {"grant_type": "client_credentials", "client_id": api_key, "client_secret": secret_key}
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def get(self) -> str:
        if self._token is not None and self._clock() < self._expires_at:
            return self._token
        async with self._lock:  # one refresh at a time; the others wait for its result
            if self._token is None or self._clock() >= self._expires_at:
                self._token, lifetime = await self._fetch()
                # Refresh a little early: never send a token that expires in flight.
                self._expires_at = self._clock() + max(0.0, lifetime - min(300.0, lifetime * 0.1))
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (rejected by the vendor), unless it was already replaced."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        self.fetches += 1
        with http.upstream_errors(f"{self._name}: access token"):
            response = await self._client.post(self._url, params=self._params, headers={"Accept": "application/json"})
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        token = body.get("access_token")
        if response.status_code < 400 and isinstance(token, str) and token:
            return token, float(body.get("expires_in") or 2592000)
        described = body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
        message = f"{self._name}: access token refused: {described}"
        if response.status_code >= 500:
            raise errors.UpstreamHTTPError(message, status=response.status_code)
        raise errors.UpstreamAuthError(message, status=response.status_code)


class BaiduErnieProvider:
    """ERNIE v1 chat models (``completions_pro``, ``ernie-4.0-turbo-8k``, ``ernie-speed-128k`` ...)."""

    def __init__(
        self,
        name: str,
        api_key: str,
        secret_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._base = base_url.rstrip("/")
        self._client = client or http.new_client(connect_timeout, read_timeout)
        self.tokens = AccessTokens(name, self._client, self._base + TOKEN_PATH, api_key, secret_key, clock=clock)

    async def aclose(self) -> None:
        await self._client.aclose()

    def payload(self, messages: Sequence[ChatMessage], params: StreamParams) -> dict[str, Any]:
        system, rest = split_system(messages)
        payload: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in alternating(rest)],
            "stream": True,
        }
        if system:
            payload["system"] = system
        payload.update(params.options("max_output_tokens"))
        return payload

    async def stream(self, messages: Sequence[ChatMessage], params: StreamParams) -> AsyncIterator[ChatDelta]:
        payload = self.payload(messages, params)
        url = self._base + CHAT_PATH.format(model=params.model)
        for attempt in (1, 2):  # a second time only with a fresh token
            token = await self.tokens.get()
            request = self._client.build_request("POST", url, params={"access_token": token}, json=payload)
            async with http.streaming(self._client, request, self.name) as response:
                if response.status_code < 400 and "text/event-stream" in response.headers.get("content-type", ""):
                    async for delta in self._deltas(response):
                        yield delta
                    return
                # Not a stream: an error as plain JSON (with status 200), or a complete answer.
                body = await _read_json(response)
            if "error_code" in body:
                if attempt == 1 and _code(body) in TOKEN_CODES:
                    self.tokens.invalidate(token)
                    continue
                raise vendor_error(self.name, body)
            if response.status_code >= 400:
                raise _http_error(self.name, response.status_code, body)
            if "result" not in body:
                raise errors.UpstreamProtocolError(f"{self.name}: the answer is neither a stream nor a result")
            yield _delta_from_result(body)  # answered without streaming
            return

    async def _deltas(self, response: httpx.Response) -> AsyncIterator[ChatDelta]:
        async for raw in http.iter_lines(response.aiter_bytes()):
            line = raw.strip()
            if line.startswith("data:"):
                data = line[5:].strip()
            elif line.startswith("{"):
                data = line  # a plain JSON error in the middle of the stream
            else:
                continue  # blank lines, comments, event:/id: fields
            chunk = http.event_object(self.name, data, "event")
            if "error_code" in chunk:
                raise vendor_error(self.name, chunk)
            text = chunk.get("result") or ""
            if chunk.get("is_end"):
                yield ChatDelta(text=text, finish_reason=_finish_reason(chunk),
                                usage=Usage.from_counts(chunk.get("usage")))
                return
            if text:
                yield ChatDelta(text=text)
        raise errors.UpstreamDisconnected(f"{self.name}: stream ended before is_end")


def _code(body: dict[str, Any]) -> int | None:
    try:
        return int(body["error_code"])
    except (KeyError, TypeError, ValueError):
        return None


def _finish_reason(chunk: dict[str, Any]) -> str:
    if chunk.get("need_clear_history"):
        return "content_filter"
    reason = chunk.get("finish_reason") or "normal"
    return "stop" if reason == "normal" else str(reason)


def _delta_from_result(body: dict[str, Any]) -> ChatDelta:
    return ChatDelta(text=body.get("result") or "", finish_reason=_finish_reason(body),
                     usage=Usage.from_counts(body.get("usage")))


def _http_error(name: str, status: int, body: dict[str, Any]) -> errors.UpstreamError:
    described = body.get("error_msg") or body.get("message") or "error"
    return http.status_error(status, f"{name}: HTTP {status}: {described}")


async def _read_json(response: httpx.Response) -> dict[str, Any]:
    body = await http.read_json(response, lambda raw: {"error_msg": http.snippet(raw)} if raw.strip() else {})
    return body if isinstance(body, dict) else {}
