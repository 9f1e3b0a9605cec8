"""A test client for the chat stream: parses SSE from the raw bytes as they arrive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from chatrelay.providers.http import SSEDecoder, SSEMessage


@dataclass
class StreamResult:
    status: int
    headers: httpx.Headers
    events: list[SSEMessage] = field(default_factory=list)
    raw: bytes = b""

    def named(self, name: str) -> list[SSEMessage]:
        return [e for e in self.events if e.event == name]

    @property
    def deltas(self) -> list[str]:
        return [json.loads(e.data)["delta"] for e in self.events if e.event == "message" and e.data != "[DONE]"]

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    @property
    def meta(self) -> dict[str, Any]:
        return json.loads(self.named("meta")[0].data)

    @property
    def done(self) -> dict[str, Any] | None:
        found = self.named("done")
        return json.loads(found[0].data) if found else None

    @property
    def error(self) -> dict[str, Any] | None:
        found = self.named("error")
        return json.loads(found[0].data) if found else None


def iter_events(response: httpx.Response, raw_sink: bytearray | None = None) -> Iterator[SSEMessage]:
    """Yield each event the moment its terminating blank line arrives."""
    decoder = SSEDecoder()
    buffer = b""
    for piece in response.iter_raw():
        if raw_sink is not None:
            raw_sink += piece
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            message = decoder.feed_line(line.rstrip(b"\r").decode("utf-8"))
            if message is not None:
                yield message


def stream_chat(
    base_url: str, token: str, body: dict[str, Any], *, fmt: str = "json", timeout: float = 20.0
) -> StreamResult:
    """POST /v1/chat/stream and read it to the end."""
    params = {"format": fmt} if fmt != "json" else None
    with httpx.Client(timeout=timeout) as client:
        with client.stream(
            "POST", f"{base_url}/v1/chat/stream", json=body, params=params,
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            raw = bytearray()
            if response.status_code != 200:
                response.read()
                return StreamResult(response.status_code, response.headers, [], response.content)
            events = list(iter_events(response, raw))
            return StreamResult(response.status_code, response.headers, events, bytes(raw))
