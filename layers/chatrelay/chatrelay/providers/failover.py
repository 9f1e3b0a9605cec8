"""A provider that fronts an ordered list of providers.

Rules:

* A member that fails **before its first token** with a retryable error
  (``UpstreamError.retryable``: connection refused, 429, 5xx, 529, first-token
  timeout ...) is abandoned and the next member is asked. Each member is tried at
  most once per answer, in order.
* A non-retryable error (our key refused, a malformed request) is not hidden by
  asking someone else: it propagates at once.
* **After the first token** nothing is retried: the user has seen part of one
  vendor's answer, and splicing another vendor's answer onto it would be wrong. The
  error propagates; the relay reports it and keeps the partial answer.
* The first delta yielded carries ``provider=<member name>``, so the stored turn
  records which provider answered.

"First token" means the first delta with answer or reasoning text, or a
``finish_reason`` (an empty answer). Content-free deltas before it (a usage-only
chunk) are held back and merged into it, so they cannot commit the answer to a
member that then fails.

Members are shared with the registry (one HTTP pool per vendor), so closing a
``FailoverProvider`` closes none of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import msgspec
from msgspec.structs import replace

from chatrelay import errors
from chatrelay.observability import logger
from chatrelay.providers.base import ChatDelta, ChatMessage, Provider, StreamParams, Usage


class Member(msgspec.Struct, frozen=True):
    name: str
    provider: Provider
    model: str | None = None
    """The vendor's model id for this member; replaces ``StreamParams.model``."""


class FailoverProvider:
    def __init__(self, name: str, members: Sequence[Member]) -> None:
        if not members:
            raise ValueError("a failover provider needs at least one member")
        self.name = name
        self.members = list(members)

    async def aclose(self) -> None:
        """Nothing to release: the members belong to the registry."""

    async def stream(self, messages: Sequence[ChatMessage], params: StreamParams) -> AsyncIterator[ChatDelta]:
        failures: list[errors.UpstreamError] = []
        for member in self.members:
            member_params = replace(params, model=member.model) if member.model else params
            upstream: AsyncIterator[ChatDelta] | None = None
            try:
                upstream = member.provider.stream(messages, member_params)
                first = await _first_token(upstream)
            except errors.UpstreamError as exc:
                await _close(upstream)
                if not exc.retryable:
                    raise
                failures.append(exc)
                logger.warning(
                    "provider failed before the first token",
                    extra={"provider": member.name, "error_code": exc.code, "upstream_status": exc.status,
                           "failover": self.name},
                )
                continue
            except BaseException:
                await _close(upstream)
                raise
            try:
                yield replace(first, provider=member.name)
                async for delta in upstream:
                    yield delta
            finally:
                await _close(upstream)
            return
        raise _all_failed(failures)


async def _first_token(upstream: AsyncIterator[ChatDelta]) -> ChatDelta:
    """The first delta with content; content-free ones before it are merged into it."""
    held: Usage | None = None
    async for delta in upstream:
        if delta.usage is not None:
            held = delta.usage
        if delta.text or delta.reasoning or delta.finish_reason:
            return delta if delta.usage is not None or held is None else replace(delta, usage=held)
    # Ended cleanly without a word (the adapters raise on a cut stream): an empty answer.
    return ChatDelta(usage=held, finish_reason="stop")


async def _close(upstream: AsyncIterator[ChatDelta] | None) -> None:
    if upstream is None:
        return
    with contextlib.suppress(Exception):
        await upstream.aclose()  # type: ignore[attr-defined]


def _all_failed(failures: list[errors.UpstreamError]) -> errors.UpstreamError:
    """The last member's error, its message listing every member's failure."""
    last = failures[-1]
    if len(failures) == 1:
        return last
    summary = "; ".join(f.message for f in failures)
    combined = type(last)(f"every provider failed: {summary}", status=last.status, **last.details)
    combined.__cause__ = last
    return combined
