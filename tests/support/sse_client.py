"""A test client for the chat stream: parses SSE from the raw bytes as they arrive."""

from __future__ import annotations

import json
import re
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

    # --- format=text: the text in data lines, everything else in ``: <name> {json}`` comments

    def comments(self, name: str) -> list[dict[str, Any]]:
        prefix = f"{name} "
        return [json.loads(line[len(prefix):]) for line in comment_lines(self.raw) if line.startswith(prefix)]

    @property
    def naive_text(self) -> str:
        """What a client that appends every message's data until ``[DONE]`` ends with."""
        answer = ""
        for event in self.events:
            if event.data == "[DONE]":
                break
            answer += event.data
        return answer

    @property
    def exact_text(self) -> str:
        """The text as a byte-level parser that keeps each data line's terminator rebuilds it."""
        return exact_text(self.raw)


_LINE = re.compile(rb"([^\r\n]*)(\r\n|\r|\n)")


def _lines(buffer: bytes, final: bool = False) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Complete lines with their terminators (CR, LF or CRLF, as SSE says), and the rest.

    A CR at the very end is held back unless ``final``: the LF that may follow it is
    in the next network read.
    """
    lines, end = [], 0
    for match in _LINE.finditer(buffer):
        if match.group(2) == b"\r" and match.end() == len(buffer) and not final:
            break
        lines.append((match.group(1), match.group(2)))
        end = match.end()
    return lines, buffer[end:]


def comment_lines(raw: bytes) -> list[str]:
    return [line[1:].decode().lstrip(" ") for line, _ in _lines(raw, final=True)[0] if line.startswith(b":")]


def exact_text(raw: bytes) -> str:
    """format=text: join each event's data lines with the break that ended each (not the last)."""
    text, event = [], []
    for line, terminator in _lines(raw, final=True)[0]:
        if line == b"":
            if event and event != [(b"[DONE]", b"\n")]:
                text.append(b"".join(d + t for d, t in event[:-1]) + event[-1][0])
            event = []
        elif line.startswith(b"data:"):
            value = line[5:]
            event.append((value[1:] if value.startswith(b" ") else value, terminator))
    return b"".join(text).decode()


def iter_events(response: httpx.Response, raw_sink: bytearray | None = None) -> Iterator[SSEMessage]:
    """Yield each event the moment its terminating blank line arrives."""
    decoder = SSEDecoder()
    buffer = b""
    for piece in response.iter_raw():
        if raw_sink is not None:
            raw_sink += piece
        lines, buffer = _lines(buffer + piece)
        for line, _ in lines:
            message = decoder.feed_line(line.decode("utf-8"))
            if message is not None:
                yield message


def stream_chat(
    base_url: str, token: str, body: dict[str, Any], *, fmt: str = "json", timeout: float = 20.0,
    headers: dict[str, str] | None = None,
) -> StreamResult:
    """POST /v1/chat/stream and read it to the end."""
    params = {"format": fmt} if fmt != "json" else None
    with httpx.Client(timeout=timeout) as client:
        with client.stream(
            "POST", f"{base_url}/v1/chat/stream", json=body, params=params,
            headers={"Authorization": f"Bearer {token}", **(headers or {})},
        ) as response:
            raw = bytearray()
            if response.status_code != 200:
                response.read()
                return StreamResult(response.status_code, response.headers, [], response.content)
            events = list(iter_events(response, raw))
            return StreamResult(response.status_code, response.headers, events, bytes(raw))
