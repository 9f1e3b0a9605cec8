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

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from chatrelay import errors
from chatrelay.providers import http
from chatrelay.providers.base import ChatDelta, ChatMessage, StreamParams, Usage


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
        self._client = client or http.new_client(connect_timeout, read_timeout)

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
        payload.update(params.options())
        return payload

    async def stream(self, messages: Sequence[ChatMessage], params: StreamParams) -> AsyncIterator[ChatDelta]:
        request = self._client.build_request(
            "POST", self._url, json=self._payload(messages, params), headers=self._headers
        )
        async with http.streaming(self._client, request, self.name) as response:
            await _raise_for_error_response(self.name, response)
            async for delta in self._deltas(response):
                yield delta

    async def _deltas(self, response: httpx.Response) -> AsyncIterator[ChatDelta]:
        content_type = response.headers.get("content-type", "")
        if "application/json" in content_type:
            # A vendor that answered without streaming (or an error with status 200).
            body = await _read_json(response)
            _raise_for_error_body(self.name, response.status_code, body)
            yield _delta_from_completion(body)
            return
        finished = False
        messages = http.iter_sse(response.aiter_bytes())
        async for message in messages:
            data = message.data.strip()
            if data == "[DONE]":
                await http.drain(messages)
                return
            if not data:
                continue
            chunk = http.event_object(self.name, data, "chunk")
            _raise_for_error_body(self.name, 200, chunk)
            delta = _delta_from_chunk(chunk)
            if delta.finish_reason is not None:
                finished = True
            if delta.text or delta.reasoning or delta.finish_reason or delta.usage:
                yield delta
        if not finished:
            raise errors.UpstreamDisconnected(f"{self.name}: stream ended before the answer finished")


def _delta_from_chunk(chunk: dict[str, Any]) -> ChatDelta:
    usage = Usage.from_counts(chunk.get("usage"))
    choices = chunk.get("choices") or []
    if not choices:
        return ChatDelta(usage=usage)
    choice = choices[0] or {}
    delta = choice.get("delta") or {}
    if usage is None:
        usage = Usage.from_counts(choice.get("usage"))  # Moonshot puts the last chunk's usage inside the choice
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
        usage=Usage.from_counts(body.get("usage")),
    )


async def _read_json(response: httpx.Response) -> Any:
    return await http.read_json(response, lambda raw: {"error": {"message": http.snippet(raw, 500)}})


async def _raise_for_error_response(name: str, response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    body = await _read_json(response)
    message = _error_message(body) or f"HTTP {response.status_code}"
    raise http.status_error(response.status_code, f"{name}: {message}", retry_after=response.headers.get("retry-after"))


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
