"""What the native-protocol fakes share with the OpenAI fake: knobs, gates, request log.

Each fake (``anthropic_fake``, ``bedrock_fake``, ``baidu_fake``) subclasses
:class:`chatrelay_dev.mockllm.server.MockLLM` for its gates (``POST /_mock/gates/{name}``)
and request log (``GET /_mock/requests``), and reads the same ``[mock ...]``
directive from the last user message. The answer text is the OpenAI fake's
(``answer_tokens(n)``), so tests compare every vendor's stream with one function.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from starlette.responses import JSONResponse
from starlette.routing import Route

from chatrelay_dev.mockllm.server import MockConfig, MockLLM

_USER_TEXT_KEYS = ("text", "content")


class Cut(Exception):
    """Raised inside a streaming body: the server drops the connection mid-response."""


def control_routes(fake: MockLLM) -> list[Route]:
    return [
        Route("/_mock/gates/{name}", fake.release_gate, methods=["POST"]),
        Route("/_mock/requests", fake.list_requests, methods=["GET"]),
        Route("/healthz", lambda r: JSONResponse({"status": "ok"}), methods=["GET"]),
    ]


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
    """The OpenAI fake's estimate: a token per four characters, at least one."""
    return sum(len(t) for t in texts) // 4 + 1


async def before_token(fake: MockLLM, config: MockConfig, index: int) -> None:
    """Wait as the fakes do before content chunk ``index``: the interval, and the gate if held."""
    if index and config.hold_after and index == config.hold_after:
        await asyncio.wait_for(fake.gate(config.gate or "default").wait(), timeout=60)
    if index:
        await asyncio.sleep(config.interval)
