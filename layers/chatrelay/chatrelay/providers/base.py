"""The one interface every LLM vendor adapter implements.

A provider turns a list of chat messages into an async iterator of
:class:`ChatDelta`. It owns one wire protocol and nothing else: no storage, no
SSE towards the client, no retries across vendors. Failures leave it only as
:class:`chatrelay.errors.UpstreamError` subclasses. Closing the iterator
(``aclose``) must cancel the upstream request, so a stopped turn stops billing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

Role = Literal["system", "user", "assistant"]


class ChatMessage(msgspec.Struct, frozen=True):
    role: Role
    content: str


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_counts(cls, raw: Any, prompt: str = "prompt_tokens", completion: str = "completion_tokens",
                    total: str = "total_tokens") -> Usage | None:
        """A vendor's usage object (OpenAI's key names unless told others); ``None`` when there is none."""
        if not isinstance(raw, dict):
            return None
        prompt_tokens = int(raw.get(prompt) or 0)
        completion_tokens = int(raw.get(completion) or 0)
        return cls(prompt_tokens, completion_tokens, int(raw.get(total) or prompt_tokens + completion_tokens))

    def to_dict(self) -> dict[str, int]:
        return {
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "totalTokens": self.total_tokens,
        }


class ChatDelta(msgspec.Struct, frozen=True):
    """One piece of an upstream answer; any field may be empty."""

    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    provider: str | None = None
    """Set by a provider that fronts others (failover): which one is answering."""


class StreamParams(msgspec.Struct, frozen=True):
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    extra: dict[str, object] = msgspec.field(default_factory=dict)

    def options(self, max_tokens_key: str = "max_tokens") -> dict[str, object]:
        """The optional fields of a vendor's JSON request body; ``extra`` comes last, so it wins."""
        found: dict[str, object] = {}
        if self.max_tokens is not None:
            found[max_tokens_key] = self.max_tokens
        if self.temperature is not None:
            found["temperature"] = self.temperature
        found.update(self.extra)
        return found


@runtime_checkable
class Provider(Protocol):
    """An LLM vendor behind one method."""

    name: str

    def stream(self, messages: Sequence[ChatMessage], params: StreamParams) -> AsyncIterator[ChatDelta]:
        """Stream the answer to ``messages``. Raises ``UpstreamError`` subclasses."""
        ...

    async def aclose(self) -> None:
        """Release connections held by the provider."""
        ...
