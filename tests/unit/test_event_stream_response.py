"""EventStreamResponse (streaming/response.py), driven as an ASGI app: one writer with pings between
events, disconnect detection, send timeouts, server shutdown, HEAD, and body bytes to the server's
own send. (Over real sockets: tests/functional/test_chat_stream.py.)"""

from __future__ import annotations

import asyncio
import signal

import pytest

from chatrelay.streaming import response
from chatrelay.streaming.response import PING, RAW_SEND, EventStreamResponse


class Source:
    """An event source that yields what a test puts in, and notes when it is closed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def chunks(self):
        try:
            while (chunk := await self.queue.get()) is not None:
                yield chunk
        finally:
            self.closed.set()


class Client:
    """The server side of one connection: what was sent, and a disconnect to deliver."""

    def __init__(self, send_delay: float = 0.0) -> None:
        self.messages: list[dict] = []
        self.in_flight = 0
        self.overlapping = False
        self.left = asyncio.Event()
        self.send_delay = send_delay

    async def receive(self) -> dict:
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.in_flight += 1
        self.overlapping |= self.in_flight > 1
        try:
            if self.send_delay and message["type"] == "http.response.body" and message.get("more_body"):
                await asyncio.sleep(self.send_delay)
            self.messages.append(message)
        finally:
            self.in_flight -= 1

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body" and m.get("more_body")]

    @property
    def completed(self) -> bool:
        return any(m["type"] == "http.response.body" and not m.get("more_body") for m in self.messages)


SCOPE = {"type": "http", "method": "POST", "path": "/v1/chat/stream", "headers": []}


def test_pings_go_out_between_events_and_never_alongside_one():
    async def main():
        source, client = Source(), Client(send_delay=0.004)
        app = EventStreamResponse(source.chunks(), ping_interval=0.01, send_timeout=None)
        task = asyncio.create_task(app(dict(SCOPE), client.receive, client.send))
        for i in range(40):
            await source.queue.put(b"data: %d\n\n" % i)
            await asyncio.sleep(0.003 if i % 10 else 0.05)  # every tenth event, a silence with pings
        await source.queue.put(None)
        await task
        return client

    client = asyncio.run(main())
    events = [b for b in client.bodies if b != PING]
    assert events == [b"data: %d\n\n" % i for i in range(40)]
    assert client.bodies.count(PING) >= 4
    assert not client.overlapping  # one send at a time
    assert client.completed
    start = client.messages[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-cache, no-transform" and b"connection" not in headers


def test_a_disconnect_ends_the_stream_and_closes_its_source_at_once():
    async def main():
        source, client = Source(), Client()
        app = EventStreamResponse(source.chunks(), ping_interval=15)
        task = asyncio.create_task(app(dict(SCOPE), client.receive, client.send))
        await source.queue.put(b"data: 1\n\n")
        await asyncio.sleep(0.01)
        client.left.set()
        await asyncio.wait_for(source.closed.wait(), 1)
        await asyncio.wait_for(task, 1)  # returns normally: the cancellation was the response's own
        return client

    client = asyncio.run(main())
    assert client.bodies == [b"data: 1\n\n"] and not client.completed


def test_a_send_that_does_not_return_ends_the_stream():
    async def main():
        source, client = Source(), Client(send_delay=3600)
        app = EventStreamResponse(source.chunks(), ping_interval=0.02, send_timeout=0.05)
        task = asyncio.create_task(app(dict(SCOPE), client.receive, client.send))
        await source.queue.put(b"data: stuck\n\n")
        await asyncio.wait_for(task, 1)
        return source, client

    source, client = asyncio.run(main())
    assert source.closed.is_set() and not client.completed  # the server drops the connection


def test_server_shutdown_ends_open_streams(monkeypatch):
    class Server:
        should_exit = False

        def handle_exit(self, sig, frame):  # what uvicorn installs as the SIGTERM handler
            self.should_exit = True

    server = Server()
    previous = signal.signal(signal.SIGTERM, server.handle_exit)
    monkeypatch.setattr(response._ShutdownWatch, "POLL", 0.01)
    try:
        async def main():
            source, client = Source(), Client()
            app = EventStreamResponse(source.chunks(), ping_interval=15)
            task = asyncio.create_task(app(dict(SCOPE), client.receive, client.send))
            await source.queue.put(b"data: 1\n\n")
            await asyncio.sleep(0.05)
            server.should_exit = True
            await asyncio.wait_for(task, 1)
            return source, client

        source, client = asyncio.run(main())
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert source.closed.is_set() and client.completed and client.bodies == [b"data: 1\n\n"]


def test_head_gets_the_headers_only():
    async def main():
        source, client = Source(), Client()
        await EventStreamResponse(source.chunks())(dict(SCOPE, method="HEAD"), client.receive, client.send)
        return client

    client = asyncio.run(main())
    assert [m["type"] for m in client.messages] == ["http.response.start", "http.response.body"]
    assert client.messages[1]["body"] == b""


def test_body_messages_go_to_the_servers_own_send_when_the_app_offers_it():
    async def main():
        source, wrapped, server = Source(), Client(), Client()
        scope = dict(SCOPE, **{RAW_SEND: server.send})
        task = asyncio.create_task(EventStreamResponse(source.chunks())(scope, wrapped.receive, wrapped.send))
        await source.queue.put(b"data: 1\n\n")
        await source.queue.put(None)
        await task
        return wrapped, server

    wrapped, server = asyncio.run(main())
    assert [m["type"] for m in wrapped.messages] == ["http.response.start"]  # the middlewares see the start
    assert server.bodies == [b"data: 1\n\n"] and server.completed


def test_an_outside_cancellation_is_not_swallowed():
    async def main():
        source, client = Source(), Client()
        task = asyncio.create_task(EventStreamResponse(source.chunks())(dict(SCOPE), client.receive, client.send))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return source

    assert asyncio.run(main()).closed.is_set()
