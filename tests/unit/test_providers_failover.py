"""FailoverProvider and TimedProvider against scripted providers (real implementations, no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest

from chatrelay import errors
from chatrelay.providers.base import ChatDelta, ChatMessage, StreamParams, Usage
from chatrelay.providers.deadlines import TimedProvider, Timeouts
from chatrelay.providers.failover import FailoverProvider, Member

MESSAGES = [ChatMessage("user", "hi")]


class Scripted:
    """A provider that plays a script: deltas, exceptions to raise, or seconds to sleep."""

    def __init__(self, name: str, *steps: object) -> None:
        self.name = name
        self.steps = steps
        self.calls: list[StreamParams] = []
        self.closed = 0

    async def aclose(self) -> None:
        pass

    async def stream(self, messages: Sequence[ChatMessage], params: StreamParams) -> AsyncIterator[ChatDelta]:
        self.calls.append(params)
        try:
            for step in self.steps:
                if isinstance(step, BaseException):
                    raise step
                if isinstance(step, (int, float)):
                    await asyncio.sleep(step)
                    continue
                yield step  # type: ignore[misc]
        finally:
            self.closed += 1


def _answer(*words: str) -> tuple[ChatDelta, ...]:
    usage = Usage(3, len(words), 3 + len(words))
    return (*(ChatDelta(text=w) for w in words), ChatDelta(finish_reason="stop", usage=usage))


PRESET_PARAMS = StreamParams(model="preset-model")


def _collect(provider, params=PRESET_PARAMS) -> list[ChatDelta]:
    async def run():
        return [d async for d in provider.stream(MESSAGES, params)]

    return anyio.run(run)


def test_primary_answers_and_its_name_is_on_the_first_delta():
    primary, secondary = Scripted("a", *_answer("x", "y")), Scripted("b", *_answer("z"))
    deltas = _collect(FailoverProvider("a", [Member("a", primary, "model-a"), Member("b", secondary, "model-b")]))
    assert [d.text for d in deltas if d.text] == ["x", "y"]
    assert deltas[0].provider == "a" and all(d.provider is None for d in deltas[1:])
    assert primary.calls[0].model == "model-a" and secondary.calls == []


@pytest.mark.parametrize("failure", [
    errors.UpstreamRateLimited("429", status=429),
    errors.UpstreamHTTPError("500", status=500),
    errors.UpstreamHTTPError("529", status=529),
    errors.UpstreamUnavailable("refused"),
    errors.UpstreamTimeout("no first token"),
])
def test_a_retryable_failure_before_the_first_token_moves_to_the_next_provider(failure):
    primary = Scripted("a", failure)
    secondary = Scripted("b", *_answer("from", " b"))
    deltas = _collect(FailoverProvider("a", [Member("a", primary), Member("b", secondary, "model-b")]))
    assert "".join(d.text for d in deltas) == "from b"
    assert deltas[0].provider == "b"
    assert secondary.calls[0].model == "model-b"
    assert primary.closed == 1


@pytest.mark.parametrize("failure", [
    errors.UpstreamAuthError("401", status=401),
    errors.UpstreamHTTPError("400", status=400),
    errors.UpstreamProtocolError("garbage"),
])
def test_a_non_retryable_failure_is_not_hidden_by_another_provider(failure):
    secondary = Scripted("b", *_answer("z"))
    with pytest.raises(type(failure)):
        _collect(FailoverProvider("a", [Member("a", Scripted("a", failure)), Member("b", secondary)]))
    assert secondary.calls == []


def test_after_the_first_token_a_failure_propagates_and_nothing_is_retried():
    primary = Scripted("a", ChatDelta(text="partial"), errors.UpstreamUnavailable("cut"))
    secondary = Scripted("b", *_answer("z"))
    seen: list[ChatDelta] = []

    async def run():
        async for delta in FailoverProvider("a", [Member("a", primary), Member("b", secondary)]).stream(
                MESSAGES, StreamParams(model="m")):
            seen.append(delta)

    with pytest.raises(errors.UpstreamUnavailable):
        anyio.run(run)
    assert [d.text for d in seen] == ["partial"] and seen[0].provider == "a"
    assert secondary.calls == []


def test_each_provider_is_tried_once_and_the_last_error_names_them_all():
    first = Scripted("a", errors.UpstreamRateLimited("a: 429", status=429))
    second = Scripted("b", errors.UpstreamHTTPError("b: 503", status=503))
    third = Scripted("c", errors.UpstreamRateLimited("c: 429", status=429))
    with pytest.raises(errors.UpstreamRateLimited) as caught:
        _collect(FailoverProvider("a", [Member("a", first), Member("b", second), Member("c", third)]))
    assert "a: 429" in caught.value.message and "b: 503" in caught.value.message and "c: 429" in caught.value.message
    assert [len(p.calls) for p in (first, second, third)] == [1, 1, 1]


def test_a_usage_only_chunk_does_not_commit_to_a_provider_and_is_kept():
    primary = Scripted("a", ChatDelta(usage=Usage(9, 0, 9)), errors.UpstreamHTTPError("overloaded", status=529))
    secondary = Scripted("b", ChatDelta(usage=Usage(5, 0, 5)), ChatDelta(text="ok"), ChatDelta(finish_reason="stop"))
    deltas = _collect(FailoverProvider("a", [Member("a", primary), Member("b", secondary)]))
    assert deltas[0].text == "ok" and deltas[0].provider == "b" and deltas[0].usage == Usage(5, 0, 5)


def test_first_token_timeout_of_a_member_fails_over():
    slow = TimedProvider(Scripted("a", 5.0, *_answer("late")), Timeouts(first_token=0.1))
    fast = Scripted("b", *_answer("fast"))

    async def run():
        with anyio.fail_after(2):
            return [d async for d in FailoverProvider("a", [Member("a", slow), Member("b", fast)]).stream(
                MESSAGES, StreamParams(model="m"))]

    deltas = anyio.run(run)
    assert deltas[0].provider == "b" and deltas[0].text == "fast"
    assert slow.inner.closed == 1  # the slow request was abandoned, not left running


def test_timed_provider_enforces_first_token_idle_and_total_limits():
    def run(provider):
        async def go():
            return [d async for d in provider.stream(MESSAGES, StreamParams(model="m"))]
        return anyio.run(go)

    with pytest.raises(errors.UpstreamTimeout, match="first token within 0.1 s"):
        run(TimedProvider(Scripted("a", 1.0, ChatDelta(text="x")), Timeouts(first_token=0.1)))
    with pytest.raises(errors.UpstreamTimeout, match="next token within 0.1 s"):
        run(TimedProvider(Scripted("a", ChatDelta(text="x"), 1.0, ChatDelta(text="y")), Timeouts(idle=0.1)))
    with pytest.raises(errors.UpstreamTimeout, match="end of the answer within 0.25 s"):
        run(TimedProvider(Scripted("a", *(x for _ in range(10) for x in (0.05, ChatDelta(text="t")))),
                          Timeouts(idle=1, total=0.25)))
    # Within the limits nothing changes; a usage-only delta does not count as a token.
    deltas = run(TimedProvider(Scripted("a", ChatDelta(usage=Usage(1, 0, 1)), 0.05, ChatDelta(text="x"), 0.05,
                                        ChatDelta(text="y")), Timeouts(first_token=0.5, idle=0.5)))
    assert [d.text for d in deltas if d.text] == ["x", "y"]


def test_closing_the_failover_stream_closes_the_member_stream():
    primary = Scripted("a", ChatDelta(text="x"), 10.0, ChatDelta(text="y"))

    async def run():
        stream = FailoverProvider("a", [Member("a", primary)]).stream(MESSAGES, StreamParams(model="m"))
        assert (await stream.__anext__()).text == "x"
        await stream.aclose()

    anyio.run(run)
    assert primary.closed == 1
