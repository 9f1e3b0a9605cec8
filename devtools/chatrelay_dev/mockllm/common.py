"""What every vendor fake shares: the answer, the knobs, gates, the request log, pacing and common faults.

Each fake (``server`` for OpenAI, ``anthropic_fake``, ``bedrock_fake``, ``baidu_fake``)
subclasses :class:`Fake` for its gates (``POST /_mock/gates/{name}``) and request log
(``GET /_mock/requests``), reads the same ``[mock ...]`` directive from the last user
message and streams the same answer (``answer_tokens(n)``, or a literal ``answer``), so
tests compare every vendor's stream with one function.

Knobs (server defaults from the command line, per request from a directive such
as ``[mock ttft=0.5 tokens=40 fault=cut fault_after=5]`` in the last user message):

    ttft         seconds before the first token          interval  seconds between tokens
    tokens       answer length in chunks                 keepalive keep-alives while "queued" (vendor's own)
    fault        the fake's faults (see each fake)       reasoning reasoning chunks first
    fault_after  chunks sent before a mid-stream fault (``cut`` drops the connection, ``stall`` goes silent)
    hold_after   chunks sent before waiting on gate ``gate`` (released by POST /_mock/gates/{gate})
    stamp        1: append ``@<time.monotonic_ns()>@`` (the send time) to each content chunk (bench/)
    say, say_at  send the chunk ``say`` + " " in place of chunk number ``say_at`` (content-safety tests)
    answer       the literal answer text instead of the corpus, in chunks of one word, CJK character or
                 white-space character each (``tokens`` is then its chunk count)

``say`` and ``answer`` are percent-decoded, so the question need not contain the words
themselves and a value may hold spaces, ``]`` or any character (``%E2%80%A8`` ...).

The gate makes streaming tests deterministic: the fake sends a token, then waits
until the test's client has seen it; a relay that buffers never releases the gate.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from itertools import count
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CORPUS = (
    "Sure! Here is a streamed answer.\n\n"
    "你好，这是一个流式回答。🚀\n\n"
    "- First point: SSE keeps newlines intact.\n"
    "- 第二点：中文与 emoji 😀 混排也不会乱码。\n\n"
    "```python\nprint('hello, chatrelay')\n```\n\n"
    "That is all for now. "
)
REASONING = "Let me think step by step. 先分析问题，再给出答案。"
_TOKEN = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]|[^\s\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+[ \t]*|\s")
TOKENS = _TOKEN.findall(CORPUS)
REASONING_TOKENS = _TOKEN.findall(REASONING)
_DIRECTIVE = re.compile(r"\[mock((?:\s+\w+=[^\s\]]+)*)\s*\]")
_PERCENT_DECODED = frozenset({"say", "answer"})
_USER_TEXT_KEYS = ("text", "content")


def answer_tokens(n: int, say: str = "", say_at: int = 0) -> list[str]:
    """The first ``n`` content chunks the fake sends (tests compare against these)."""
    return [f"{say} " if say and i == say_at else TOKENS[i % len(TOKENS)] for i in range(n)]


def answer_text(n: int, say: str = "", say_at: int = 0) -> str:
    return "".join(answer_tokens(n, say, say_at))


def literal_tokens(text: str) -> list[str]:
    """The chunks a literal ``answer`` is sent in (they join back to ``text``)."""
    return _TOKEN.findall(text)


@dataclass(frozen=True)
class MockConfig:
    ttft: float = 0.05
    interval: float = 0.03
    tokens: int = 40
    fault: str = "none"
    fault_after: int = 3
    keepalive: bool = False
    reasoning: int = 0
    hold_after: int = 0
    gate: str = ""
    api_key: str = ""
    """When set, requests must carry the key (each fake checks it where its vendor does)."""
    say: str = ""
    say_at: int = 0
    stamp: bool = False
    """Append the send time (``@<time.monotonic_ns()>@``, CLOCK_MONOTONIC: system-wide) to each
    content chunk, so a client on the same machine can tell each chunk's delivery delay."""
    answer: str = ""

    def with_directive(self, text: str) -> MockConfig:
        match = _DIRECTIVE.search(text)
        if not match:
            return self
        types = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for pair in match.group(1).split():
            key, _, value = pair.partition("=")
            if key not in types or key == "api_key":
                continue
            kind = types[key]
            if kind in ("float", float):
                changes[key] = float(value)
            elif kind in ("int", int):
                changes[key] = int(value)
            elif kind in ("bool", bool):
                changes[key] = value.lower() in ("1", "true", "yes")
            else:
                changes[key] = unquote(value) if key in _PERCENT_DECODED else value
        if "answer" in changes:
            changes["tokens"] = len(literal_tokens(changes["answer"]))
        return replace(self, **changes)

    def pieces(self) -> list[str]:
        """The answer's content chunks, as every fake sends them."""
        if self.answer:
            return literal_tokens(self.answer)
        return answer_tokens(self.tokens, self.say, self.say_at)


class Cut(Exception):
    """Raised inside a streaming body: the server drops the connection mid-response."""


class Fake:
    """A fake vendor: its configuration, gates and request log; subclasses add the vendor's routes."""

    config_class: ClassVar[type[MockConfig]] = MockConfig
    """A fake with knobs of its own widens ``MockConfig``; a plain one given to it is widened."""

    def __init__(self, config: MockConfig | None = None, history: int = 500) -> None:
        if config is None:
            config = self.config_class()
        elif not isinstance(config, self.config_class):
            config = self.config_class(**asdict(config))
        self.config = config
        self.requests: deque[dict[str, Any]] = deque(maxlen=history)
        self._gates: dict[str, asyncio.Event] = {}
        self._ids = count(1)

    def routes(self) -> list[Route]:
        """The vendor's routes (subclasses)."""
        raise NotImplementedError

    def app(self) -> Starlette:
        app = Starlette(routes=[
            *self.routes(),
            Route("/_mock/gates/{name}", self.release_gate, methods=["POST"]),
            Route("/_mock/requests", self.list_requests, methods=["GET"]),
            Route("/healthz", lambda r: JSONResponse({"status": "ok"}), methods=["GET"]),
        ])
        app.state.mock = self
        return app

    def gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    async def release_gate(self, request: Request) -> Response:
        self.gate(request.path_params["name"]).set()
        return JSONResponse({"released": request.path_params["name"]})

    async def list_requests(self, request: Request) -> Response:
        return JSONResponse(list(self.requests))

    def knobs(self, messages: Iterable[dict[str, Any]]) -> MockConfig:
        """This request's configuration: the server's, changed by a directive in the last user message."""
        return self.config.with_directive(last_user_text(messages))

    def log(self, config: MockConfig, **fields: Any) -> dict[str, Any]:
        """Start the request's record: what was asked and, in ``outcome``, how it ended."""
        record: dict[str, Any] = {**fields, "config": asdict(config), "outcome": "open"}
        self.requests.append(record)
        return record

    async def content(self, config: MockConfig, record: dict[str, Any], frame: Callable[[int, str], bytes],
                      faults: Mapping[str, bytes] | None = None, tail: Iterable[bytes] = ()) -> AsyncIterator[bytes]:
        """The answer's chunks as ``frame(position, piece)`` encodes them, then ``tail``, paced by the knobs.

        After ``fault_after`` chunks, ``cut`` drops the connection, ``stall`` goes silent and a
        fault of this fake's own (``faults``) sends its bytes in place of the rest, tail included.
        """
        for position, piece in enumerate(config.pieces()):
            if config.fault != "none" and position == config.fault_after:
                record["outcome"] = config.fault
                if config.fault == "cut":
                    raise Cut("connection cut by the mock")
                if config.fault == "stall":
                    await asyncio.sleep(3600)
                if faults and config.fault in faults:
                    yield faults[config.fault]
                    return
            if position and config.hold_after and position == config.hold_after:
                await asyncio.wait_for(self.gate(config.gate or "default").wait(), timeout=60)
            if position:
                await asyncio.sleep(config.interval)
            if config.stamp:
                piece = f"{piece}@{time.monotonic_ns()}@"
            yield frame(position, piece)
        for data in tail:
            yield data


async def reasoning(config: MockConfig) -> AsyncIterator[str]:
    """The reasoning chunks (``reasoning`` of them), one per ``interval``."""
    for piece in REASONING_TOKENS[: config.reasoning]:
        yield piece
        await asyncio.sleep(config.interval)


@contextmanager
def outcome(record: dict[str, Any]) -> Iterator[None]:
    """Around a streaming body: ``complete`` when it ends (unless a fault said otherwise), ``cancelled``
    when the caller hangs up."""
    try:
        yield
    except (asyncio.CancelledError, GeneratorExit):
        record["outcome"] = "cancelled"
        raise
    if record["outcome"] == "open":
        record["outcome"] = "complete"


T = TypeVar("T")


def http_fault(config: MockConfig, record: dict[str, Any], table: Mapping[str, T]) -> T | None:
    """The table's entry for the configured fault, if it has one (and the outcome recorded)."""
    if config.fault not in table:
        return None
    record["outcome"] = config.fault
    return table[config.fault]


def content_text(content: Any) -> str:
    """A message's text whether it is a string or a list of blocks (``[{"type":"text","text":...}]``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get(k, "")) for b in content if isinstance(b, dict) for k in _USER_TEXT_KEYS
                       if isinstance(b.get(k), str))
    return ""


def last_user_text(messages: Iterable[dict[str, Any]]) -> str:
    for message in reversed(list(messages)):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def prompt_tokens(*texts: str) -> int:
    """The fakes' estimate: a token per four characters, at least one."""
    return sum(len(t) for t in texts) // 4 + 1
