"""The one interface every LLM vendor adapter implements.

A provider turns a list of chat messages into an async iterator of
:class:`ChatDelta`. It owns one wire protocol and nothing else: no storage, no
SSE towards the client, no retries across vendors. Failures leave it only as
:class:`chatrelay.errors.UpstreamError` subclasses. Closing the iterator
(``aclose``) must cancel the upstream request, so a stopped turn stops billing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "totalTokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class ChatDelta:
    """One piece of an upstream answer; any field may be empty."""

    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    provider: str | None = None
    """Set by a provider that fronts others (failover): which one is answering."""


@dataclass(frozen=True, slots=True)
class StreamParams:
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    extra: dict[str, object] = field(default_factory=dict)


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
