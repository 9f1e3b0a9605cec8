"""A lean SSE load generator: raw asyncio protocols, one HTTP/1.1 request per stream.

httpx costs tens of microseconds per received chunk; at 1,000 streams × 20 tokens/s
that alone would fill the load generator's core. This client only writes the request
and, for every read, notes the arrival time and the send stamps in it: the fake
upstream (``[mock stamp=1]``) appends ``@<time.monotonic_ns()>@`` to every content
chunk, and CLOCK_MONOTONIC is system-wide on Linux, so ``arrival - stamp`` is each
chunk's delivery delay, on the direct path and through the relay alike.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field

STAMP = re.compile(rb"@(\d{6,20})@")


@dataclass(slots=True)
class StreamResult:
    sent_ns: int = 0
    """When the request was written (connection established)."""
    status: int = 0
    chunks: list[tuple[int, int]] = field(default_factory=list)
    """(arrival_ns, stamp_ns) of every content chunk, in order."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None and bool(self.chunks)

    @property
    def ttft_ns(self) -> int:
        """Request written to first content chunk received."""
        return self.chunks[0][0] - self.sent_ns

    @property
    def first_stamp_ns(self) -> int:
        """Request written to first content chunk sent by the upstream."""
        return self.chunks[0][1] - self.sent_ns


class _SSEProtocol(asyncio.Protocol):
    def __init__(self, request: bytes, result: StreamResult, done: asyncio.Future) -> None:
        self._request = request
        self._result = result
        self._done = done
        self._tail = b""
        self._head = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._result.sent_ns = time.monotonic_ns()
        transport.write(self._request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        result = self._result
        if not result.status:
            self._head += data
            if b"\r\n" not in self._head:
                return
            try:
                result.status = int(self._head.split(b" ", 2)[1])
            except (IndexError, ValueError):
                result.status = -1
            data, self._head = self._head, b""
        buffer = self._tail + data if self._tail else data
        end = 0
        for match in STAMP.finditer(buffer):
            result.chunks.append((now, int(match.group(1))))
            end = match.end()
        rest = buffer[end:]
        at = rest.rfind(b"@")
        # A stamp cut across two reads: keep its start for the next read.
        self._tail = rest[at:] if at >= 0 and len(rest) - at <= 22 else b""

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._result.error is None:
            self._result.error = type(exc).__name__
        if not self._done.done():
            self._done.set_result(None)


def relay_request(port: int, token: str, directive: str) -> bytes:
    body = json.dumps({"prompt": f"bench [mock {directive} stamp=1]"}).encode()
    return (
        f"POST /v1/chat/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


def openai_request(port: int, directive: str, *, key: str, model: str | None = "mock-gpt") -> bytes:
    """A streamed chat completion from an OpenAI-compatible proxy (LiteLLM), the same prompt as the relay's."""
    body = json.dumps({"model": model, "stream": True,
                       "messages": [{"role": "user", "content": f"bench [mock {directive} stamp=1]"}]}).encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


def direct_request(port: int, directive: str) -> bytes:
    body = json.dumps({"model": "mock-gpt", "stream": True, "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": f"bench [mock {directive} stamp=1]"}]}).encode()
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def stream(port: int, request: bytes, timeout: float = 60.0) -> StreamResult:
    """Send one request and read the SSE answer until the server closes (``Connection: close``)."""
    loop = asyncio.get_running_loop()
    result = StreamResult()
    done: asyncio.Future = loop.create_future()
    transport = None
    try:
        transport, _ = await loop.create_connection(lambda: _SSEProtocol(request, result, done), "127.0.0.1", port)
        await asyncio.wait_for(done, timeout)
    except (OSError, TimeoutError) as exc:
        result.error = result.error or type(exc).__name__
    finally:
        if transport is not None:
            transport.close()
    return result


def delays_ms(result: StreamResult, skip_first: bool = True, window: tuple[int, int] | None = None) -> list[float]:
    """Per-chunk delivery delay (arrival - upstream send stamp), in ms; optionally only
    chunks stamped inside ``window`` (monotonic ns)."""
    chunks = result.chunks[1:] if skip_first else result.chunks
    if window is not None:
        lo, hi = window
        chunks = [c for c in chunks if lo <= c[1] <= hi]
    return [(arrival - stamp) / 1e6 for arrival, stamp in chunks]


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (the dev extra has it): a cheaper load generator."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()
