"""Anthropic Messages API streaming over httpx (``POST {base}/v1/messages``, ``stream: true``).

Wire protocol: named SSE events ``message_start`` (usage.input_tokens),
``content_block_start``, ``content_block_delta`` (``text_delta`` → answer,
``thinking_delta`` → reasoning; ``signature_delta`` and tool deltas ignored),
``content_block_stop``, ``message_delta`` (stop_reason, cumulative
usage.output_tokens), ``message_stop``, any number of ``ping``, and ``error``
(``{"type":"error","error":{"type":"overloaded_error",...}}``) in the middle of a
stream. HTTP errors carry the same error object; 529 means overloaded.

Deliberate choices: the system prompt goes in the top-level ``system`` field;
messages are made to alternate starting with a user turn; ``max_tokens`` is
required by the API, so a default applies when the request sets none. Usage is
yielded once, with the finish (input tokens from ``message_start`` plus output
tokens from the last ``message_delta``), so no content-free delta precedes the
first token. Stop reasons are mapped to the OpenAI-style names the relay stores
(``end_turn``/``stop_sequence`` → ``stop``, ``max_tokens`` → ``length``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from chatrelay import errors
from chatrelay.providers import http
from chatrelay.providers.base import ChatDelta, ChatMessage, StreamParams, Usage
from chatrelay.providers.messages import alternating, split_system

API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 4096

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                "refusal": "content_filter", "pause_turn": "pause"}

# error.type -> (our error class, HTTP status it stands for)
_ERROR_TYPES: dict[str, tuple[type[errors.UpstreamError], int]] = {
    "invalid_request_error": (errors.UpstreamHTTPError, 400),
    "authentication_error": (errors.UpstreamAuthError, 401),
    "permission_error": (errors.UpstreamAuthError, 403),
    "not_found_error": (errors.UpstreamHTTPError, 404),
    "request_too_large": (errors.UpstreamHTTPError, 413),
    "rate_limit_error": (errors.UpstreamRateLimited, 429),
    "api_error": (errors.UpstreamHTTPError, 500),
    "overloaded_error": (errors.UpstreamHTTPError, 529),
}


class AnthropicProvider:
    """Claude through the Messages API."""

    def __init__(
        self,
        name: str,
        api_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self._url = base_url.rstrip("/") + "/v1/messages"
        self._max_tokens = max_tokens
        headers = {"anthropic-version": API_VERSION, "accept": "text/event-stream"}
        if api_key:
            headers["x-api-key"] = api_key
        self._headers = headers
        self._client = client or http.new_client(connect_timeout, read_timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    def payload(self, messages: Sequence[ChatMessage], params: StreamParams) -> dict[str, Any]:
        system, rest = split_system(messages)
        payload: dict[str, Any] = {
            "model": params.model,
            "max_tokens": params.max_tokens or self._max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in alternating(rest)],
            "stream": True,
        }
        if system:
            payload["system"] = system
        if params.temperature is not None:
            payload["temperature"] = params.temperature
        payload.update(params.extra)
        return payload

    async def stream(self, messages: Sequence[ChatMessage], params: StreamParams) -> AsyncIterator[ChatDelta]:
        request = self._client.build_request("POST", self._url, json=self.payload(messages, params),
                                             headers=self._headers)
        async with http.streaming(self._client, request, self.name) as response:
            if response.status_code >= 400:
                raise _http_error(self.name, response, await _read_json(response))
            async for delta in self._deltas(response):
                yield delta

    async def _deltas(self, response: httpx.Response) -> AsyncIterator[ChatDelta]:
        if "application/json" in response.headers.get("content-type", ""):
            body = await _read_json(response)  # no stream: a complete Message (or an error)
            if body.get("type") == "error":
                raise _error_event(self.name, body)
            yield _delta_from_message(body)
            return
        input_tokens = output_tokens = 0
        stop_reason: str | None = None
        async for event in http.iter_sse(response.aiter_bytes()):
            name = event.event
            if name == "ping" or not event.data.strip():
                continue
            data = http.event_object(self.name, event.data, f"{name} event")
            kind = data.get("type") or name
            if kind == "error":
                raise _error_event(self.name, data)
            if kind == "message_start":
                usage = (data.get("message") or {}).get("usage") or {}
                input_tokens = _input_tokens(usage)
                output_tokens = int(usage.get("output_tokens") or 0)
            elif kind == "content_block_delta":
                delta = data.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield ChatDelta(text=delta["text"])
                elif delta.get("type") == "thinking_delta" and delta.get("thinking"):
                    yield ChatDelta(reasoning=delta["thinking"])
            elif kind == "message_delta":
                stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                usage = data.get("usage") or {}
                output_tokens = int(usage.get("output_tokens") or output_tokens)
                if "input_tokens" in usage and usage["input_tokens"] is not None:
                    input_tokens = _input_tokens(usage)
            elif kind == "message_stop":
                yield ChatDelta(
                    finish_reason=STOP_REASONS.get(stop_reason or "end_turn", stop_reason),
                    usage=Usage(input_tokens, output_tokens, input_tokens + output_tokens),
                )
                return
            # content_block_start / content_block_stop and unknown (future) events: nothing to relay
        raise errors.UpstreamDisconnected(f"{self.name}: stream ended before message_stop")


def _input_tokens(usage: dict[str, Any]) -> int:
    """Prompt tokens including prompt-cache reads and writes (all of them are billed input)."""
    return sum(int(usage.get(k) or 0) for k in ("input_tokens", "cache_creation_input_tokens",
                                                 "cache_read_input_tokens"))


def _delta_from_message(body: dict[str, Any]) -> ChatDelta:
    text = "".join(b.get("text", "") for b in body.get("content") or [] if b.get("type") == "text")
    thinking = "".join(b.get("thinking", "") for b in body.get("content") or [] if b.get("type") == "thinking")
    usage = body.get("usage") or {}
    prompt, completion = _input_tokens(usage), int(usage.get("output_tokens") or 0)
    reason = body.get("stop_reason") or "end_turn"
    return ChatDelta(text=text, reasoning=thinking, finish_reason=STOP_REASONS.get(reason, reason),
                     usage=Usage(prompt, completion, prompt + completion))


def _error_event(name: str, body: dict[str, Any], status: int | None = None) -> errors.UpstreamError:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    error_type = str(error.get("type") or "api_error")
    cls, implied = _ERROR_TYPES.get(error_type, (errors.UpstreamHTTPError, 500))
    message = f"{name}: {error_type}: {error.get('message') or 'error'}"
    return cls(message, status=status or implied, vendorError=error_type)


def _http_error(name: str, response: httpx.Response, body: dict[str, Any]) -> errors.UpstreamError:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    message = f"{name}: HTTP {response.status_code}: {error.get('type') or 'error'}"
    if error.get("message"):
        message += f": {error['message']}"
    return http.status_error(response.status_code, message, retry_after=response.headers.get("retry-after"),
                             vendorError=error.get("type"))


async def _read_json(response: httpx.Response) -> dict[str, Any]:
    body = await http.read_json(response, lambda raw: {"type": "error", "error": {
        "type": "api_error", "message": http.snippet(raw)}})
    return body if isinstance(body, dict) else {}
