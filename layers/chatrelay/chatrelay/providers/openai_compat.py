"""OpenAI-compatible chat completions streaming over httpx.

Covers OpenAI and the vendors that copy its wire format (DeepSeek, DashScope
compatible mode, Zhipu, Qianfan v2, Hunyuan, Moonshot). Tolerated quirks: SSE
comments (DeepSeek's ``: keep-alive`` while queued), a usage chunk with empty
``choices`` (``stream_options.include_usage``), usage on the finishing chunk
(Zhipu, Hunyuan) or inside its choice (Moonshot), ``reasoning_content`` deltas
(DeepSeek reasoner, GLM-4.5+, Qwen3 thinking), a missing ``[DONE]`` after a
``finish_reason``, error objects inside the stream, and error bodies that are plain
JSON (with or without an HTTP error status). ``include_usage=False`` for vendors
that reject ``stream_options`` (the Zhipu preset).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from chatrelay import errors
from chatrelay.providers.base import ChatDelta, ChatMessage, StreamParams, Usage
from chatrelay.streaming.sse import iter_sse

_MAX_ERROR_BODY = 64 * 1024


class OpenAICompatProvider:
    """One OpenAI-compatible endpoint (base URL + key)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None = None,
        *,
        include_usage: bool = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._include_usage = include_usage
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        # One pooled client per provider, created once per process.
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=4000, max_keepalive_connections=200),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _payload(self, messages: Sequence[ChatMessage], params: StreamParams) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": params.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
        }
        if self._include_usage:
            payload["stream_options"] = {"include_usage": True}
        if params.max_tokens is not None:
            payload["max_tokens"] = params.max_tokens
        if params.temperature is not None:
            payload["temperature"] = params.temperature
        payload.update(params.extra)
        return payload

    async def stream(self, messages: Sequence[ChatMessage], params: StreamParams) -> AsyncIterator[ChatDelta]:
        request = self._client.build_request(
            "POST", self._url, json=self._payload(messages, params), headers=self._headers
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise errors.UpstreamTimeout(f"{self.name}: connecting timed out") from exc
        except httpx.TransportError as exc:
            raise errors.UpstreamUnavailable(f"{self.name}: {type(exc).__name__}") from exc
        try:
            await _raise_for_error_response(self.name, response)
            async for delta in self._deltas(response):
                yield delta
        except httpx.TimeoutException as exc:
            raise errors.UpstreamTimeout(f"{self.name}: read timed out") from exc
        except httpx.TransportError as exc:
            raise errors.UpstreamDisconnected(f"{self.name}: {type(exc).__name__}") from exc
        finally:
            # Closing the response drops the connection: the vendor stops generating.
            await response.aclose()

    async def _deltas(self, response: httpx.Response) -> AsyncIterator[ChatDelta]:
        content_type = response.headers.get("content-type", "")
        if "application/json" in content_type:
            # A vendor that answered without streaming (or an error with status 200).
            body = await _read_json(response)
            _raise_for_error_body(self.name, response.status_code, body)
            yield _delta_from_completion(body)
            return
        finished = False
        messages = iter_sse(response.aiter_lines())
        async for message in messages:
            data = message.data.strip()
            if data == "[DONE]":
                await _drain(messages)
                return
            if not data:
                continue
            try:
                chunk = json.loads(data)
            except ValueError as exc:
                raise errors.UpstreamProtocolError(f"{self.name}: malformed chunk") from exc
            if not isinstance(chunk, dict):
                raise errors.UpstreamProtocolError(f"{self.name}: chunk is not an object")
            _raise_for_error_body(self.name, 200, chunk)
            delta = _delta_from_chunk(chunk)
            if delta.finish_reason is not None:
                finished = True
            if delta.text or delta.reasoning or delta.finish_reason or delta.usage:
                yield delta
        if not finished:
            raise errors.UpstreamDisconnected(f"{self.name}: stream ended before the answer finished")


_DRAIN_SECONDS = 0.5


async def _drain(rest: AsyncIterator[Any]) -> None:
    """Read the body to its end after ``[DONE]`` (normally just the closing chunk), so httpx
    returns the connection to its pool and the next turn skips the TCP and TLS handshakes.
    A vendor that keeps the body open is not waited for long: the connection is dropped then."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for _ in rest:
                pass


def _delta_from_chunk(chunk: dict[str, Any]) -> ChatDelta:
    usage = _usage(chunk.get("usage"))
    choices = chunk.get("choices") or []
    if not choices:
        return ChatDelta(usage=usage)
    choice = choices[0] or {}
    delta = choice.get("delta") or {}
    if usage is None:
        usage = _usage(choice.get("usage"))  # Moonshot puts the last chunk's usage inside the choice
    return ChatDelta(
        text=delta.get("content") or "",
        reasoning=delta.get("reasoning_content") or "",
        finish_reason=choice.get("finish_reason"),
        usage=usage,
    )


def _delta_from_completion(body: dict[str, Any]) -> ChatDelta:
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") or {}
    return ChatDelta(
        text=message.get("content") or "",
        reasoning=message.get("reasoning_content") or "",
        finish_reason=choices[0].get("finish_reason") or "stop",
        usage=_usage(body.get("usage")),
    )


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    return Usage(prompt, completion, int(raw.get("total_tokens") or prompt + completion))


async def _read_json(response: httpx.Response) -> Any:
    raw = b""
    async for piece in response.aiter_bytes():
        raw += piece
        if len(raw) > _MAX_ERROR_BODY:
            break
    try:
        return json.loads(raw)
    except ValueError:
        return {"error": {"message": raw[:500].decode("utf-8", "replace")}}


async def _raise_for_error_response(name: str, response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    body = await _read_json(response)
    message = _error_message(body) or f"HTTP {response.status_code}"
    status = response.status_code
    text = f"{name}: {message}"
    if status in (401, 403):
        raise errors.UpstreamAuthError(text, status=status)
    if status == 429:
        raise errors.UpstreamRateLimited(text, status=status, retryAfter=response.headers.get("retry-after"))
    raise errors.UpstreamHTTPError(text, status=status)


def _raise_for_error_body(name: str, status: int, body: Any) -> None:
    if isinstance(body, dict) and ("error" in body or "error_code" in body):
        raise errors.UpstreamHTTPError(f"{name}: {_error_message(body)}", status=status)


def _error_message(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or error)
    if isinstance(error, str):
        return error
    if "error_msg" in body:  # Baidu style
        return str(body["error_msg"])
    return str(body.get("message") or "")
