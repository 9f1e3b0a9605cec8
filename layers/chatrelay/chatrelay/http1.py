"""A lean HTTP/1.1 client on asyncio: the app's pooled connections to LLM vendors and to AWS.

httpx stays the client API (``AsyncClient``, ``Request``, ``Response``, timeouts, its error
classes, proxies from the environment, content decoding); this module replaces only its
default transport, httpcore, on the hot path. Measured reasons (bench/results/report.md):
httpcore's pool re-examines every connection, and for each idle one counts all of them
again, on every request and every response close (``_assign_requests_to_connections``,
quadratic: 60 % of the app's CPU once a few hundred idle connections were pooled), and
every read runs under an anyio cancel scope of its own. Here:

* **Pool**: per origin, a stack of idle connections (the most recently used is reused
  first, so the rest expire), O(1) to take and to return; idle connections older than
  ``keepalive_expiry`` are closed as the stack is used; a connection is returned the moment
  its response's last byte arrives, whether or not the reader has caught up.
* **Reads**: an ``asyncio.Protocol`` parses the response (head, then ``Content-Length``,
  chunked or close-delimited bodies) as bytes arrive; the reader awaits a future only when
  nothing is buffered. The read timeout is one timer per connection, re-armed lazily (the
  timer checks when data last arrived), not a cancel scope per read.
* **Reuse**: a request sent on a pooled connection that the server had already closed (no
  byte of an answer came back) is sent again once on a new connection, as browsers and
  Go's client do; every other failure is raised.
* **Errors**: httpx's own exception classes (``ConnectError``, ``ConnectTimeout``,
  ``ReadTimeout``, ``ReadError``, ``WriteError``, ``RemoteProtocolError``), so the places that
  translate httpx's errors (``providers/http.py``, ``aws.py``) are the only ones.

Not here: HTTP/2, proxies, ``Expect: 100-continue`` bodies, streamed request bodies (requests
are built whole), and the write timeout (requests are small, written at once). Where the
environment names a proxy (``HTTPS_PROXY``...: :func:`proxies_configured`), the callers keep
httpx's default transport, which honours it (and ``NO_PROXY``) as before.
A pool belongs to one event loop; a transport used from another loop opens its own.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx

MAX_HEAD = 64 * 1024
"""The largest response head accepted (httpcore's h11 allows 16 KiB per line; vendors send < 2 KiB)."""
HIGH_WATER = 1024 * 1024
"""Body bytes buffered for a reader that does not keep up before the socket stops being read."""
_CRLF = b"\r\n"
_NO_BODY_STATUS = frozenset({204, 304})


class _Exchange:
    """One response: its head once parsed, then its body's pieces as they arrive."""

    __slots__ = ("complete", "error", "head", "pieces", "size", "waiter")

    def __init__(self) -> None:
        self.head: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.pieces: list[bytes] = []
        self.size = 0
        self.complete = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.on_idle: Any = None
        """Called with the connection when a response ended and the connection may carry another."""
        self._exchange: _Exchange | None = None
        self._buffer = bytearray()
        self._mode = ""  # "head", "length", "chunked", "close"; "" between requests
        self._left = 0  # body bytes left ("length") or left in the current chunk ("chunked")
        self._chunk_state = 0  # chunked: 0 size line, 1 data, 2 CRLF after data, 3 trailers
        self._keep_alive = True
        self._no_body = False
        self._got_bytes = False
        self._paused = False
        self._last = 0.0
        self._timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ---- asyncio's callbacks ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange = self._exchange
        if exchange is None:
            return
        if self._mode == "close":
            self._end_body()  # a body delimited by the end of the connection
            return
        error = httpx.RemoteProtocolError("Server disconnected without sending a response") \
            if not self._got_bytes else httpx.ReadError("the connection closed before the response ended")
        self._fail(error)

    def data_received(self, data: bytes) -> None:
        self._last = self._loop.time()
        exchange = self._exchange
        if exchange is None:  # bytes nobody asked for: the server is confused or closing
            self.close()
            return
        self._got_bytes = True
        try:
            if self._mode == "head":
                self._buffer += data
                data = self._parse_head()
                if not data:
                    return
                if not self._mode:  # bytes after a response without a body
                    self.close()
                    return
            if self._mode == "length":
                self._take_length(data)
            elif self._mode == "chunked":
                self._take_chunked(data)
            elif self._mode == "close":
                self._deliver(data)
        except ValueError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}"))
            self.close()

    # ---- a request ----

    def send(self, head: bytes, body: bytes, *, expect_body: bool, read_timeout: float | None) -> _Exchange:
        """Write a request; the returned exchange fills in as the answer arrives."""
        exchange = self._exchange = _Exchange()
        self._mode, self._buffer = "head", bytearray()
        self._keep_alive, self._no_body, self._got_bytes = True, not expect_body, False
        self._timeout = read_timeout
        assert self.transport is not None
        self.transport.write(head + body)
        return exchange

    async def wait(self, exchange: _Exchange) -> None:
        """Until ``exchange`` has news (head, body bytes, its end or an error); the read timeout applies."""
        waiter = exchange.waiter = self._loop.create_future()
        self._last = self._loop.time()
        if self._timeout is not None and self._timer is None:
            self._timer = self._loop.call_at(self._last + self._timeout, self._check_timeout)
        if self._paused:
            self._paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        await waiter

    def release(self, exchange: _Exchange) -> None:
        """The reader is done with ``exchange``: an unfinished response drops the connection."""
        if self._exchange is exchange:
            self._exchange = None
            self.close()

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    # ---- parsing ----

    def _parse_head(self) -> bytes:
        """Parse the head once it is all there; return the body bytes that followed it."""
        buffer = self._buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise ValueError("response head too large")
                return b""
            lines = bytes(buffer[:end]).split(_CRLF)
            rest = bytes(buffer[end + 4:])
            version, _, status_reason = lines[0].partition(b" ")
            if not version.startswith(b"HTTP/1."):
                raise ValueError("not an HTTP/1.x response")
            status = int(status_reason[:3])
            if 100 <= status < 200 and status != 101:
                buffer[:] = rest  # an informational answer: the real one follows
                continue
            break
        headers: list[tuple[bytes, bytes]] = []
        length = chunked = None
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise ValueError("header line without a colon")
            name, value = name.strip(), value.strip()
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
                if length < 0:
                    raise ValueError("negative Content-Length")
            elif lower == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif lower == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    self._keep_alive = False
        if version == b"HTTP/1.0":
            self._keep_alive = self._keep_alive and any(
                n.lower() == b"connection" and b"keep-alive" in v.lower() for n, v in headers)
        self._buffer = bytearray()
        exchange = self._exchange
        assert exchange is not None
        exchange.head = (status, headers)
        if self._no_body or status in _NO_BODY_STATUS:
            self._mode = "length"
            self._left = 0
            self._end_body()
            return b""
        if chunked:
            self._mode, self._chunk_state = "chunked", 0
        elif length is not None:
            self._mode, self._left = "length", length
            if length == 0:
                self._end_body()
                return b""
        else:
            self._mode, self._keep_alive = "close", False
        exchange.wake()
        return rest

    def _take_length(self, data: bytes) -> None:
        if len(data) > self._left:
            self._keep_alive = False  # bytes beyond the body: do not trust the connection again
            data = data[: self._left]
        self._left -= len(data)
        self._deliver(data)
        if self._left == 0:
            self._end_body()

    def _take_chunked(self, data: bytes) -> None:
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer = bytearray()
        position, size = 0, len(data)
        pieces: list[bytes] = []
        while position < size:
            state = self._chunk_state
            if state == 1:  # chunk data
                take = min(self._left, size - position)
                pieces.append(data if take == size else data[position:position + take])
                position += take
                self._left -= take
                if self._left == 0:
                    self._chunk_state = 2
                continue
            end = data.find(_CRLF, position)
            if end < 0:
                if size - position > MAX_HEAD:
                    raise ValueError("chunk size line too long")
                self._buffer = bytearray(data[position:])
                break
            line = data[position:end]
            position = end + 2
            if state == 0:  # chunk size
                chunk_size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                if chunk_size < 0:
                    raise ValueError("negative chunk size")
                if chunk_size:
                    self._left, self._chunk_state = chunk_size, 1
                else:
                    self._chunk_state = 3
            elif state == 2:  # the CRLF after a chunk's data
                if line:
                    raise ValueError("missing CRLF after chunk data")
                self._chunk_state = 0
            elif not line:  # state 3: trailers end at an empty line
                if position < size:
                    self._keep_alive = False
                if pieces:
                    self._deliver(b"".join(pieces))
                self._end_body()
                return
        if pieces:
            self._deliver(pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def _deliver(self, data: bytes) -> None:
        if not data:
            return
        exchange = self._exchange
        assert exchange is not None
        exchange.pieces.append(data)
        exchange.size += len(data)
        if exchange.size > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        exchange.wake()

    def _end_body(self) -> None:
        exchange, self._exchange = self._exchange, None
        self._mode = ""
        self._cancel_timer()
        if exchange is not None:
            exchange.complete = True
            exchange.wake()
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if not self._keep_alive or self.closed:
            self.close()
        elif self.on_idle is not None:
            self.on_idle(self)

    def _fail(self, error: Exception) -> None:
        exchange, self._exchange = self._exchange, None
        self._mode = ""
        self._cancel_timer()
        self.closed = True
        if exchange is not None:
            exchange.error = error
            exchange.wake()

    def _check_timeout(self) -> None:
        self._timer = None
        exchange = self._exchange
        if exchange is None or exchange.waiter is None or self._timeout is None:
            return  # nobody is waiting: the timer is set again by the next wait
        due = self._last + self._timeout
        if self._loop.time() >= due - 0.001:
            self._fail(httpx.ReadTimeout("timed out waiting for the response"))
            self.close()
        else:
            self._timer = self._loop.call_at(due, self._check_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


Origin = tuple[str, str, int]


class ConnectionPool:
    """Keep-alive connections per origin, on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, max_idle_per_origin: int = 256,
                 keepalive_expiry: float = 5.0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.loop = loop
        self._idle: dict[Origin, deque[Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self.connections_opened = 0
        self.closed = False

    async def request(self, origin: Origin, head: bytes, body: bytes, *, expect_body: bool = True,
                      connect_timeout: float | None = None,
                      read_timeout: float | None = None) -> tuple[Connection, _Exchange]:
        """Send a request; return once the answer's head has arrived (``exchange.head``)."""
        for attempt in (1, 2):
            connection, reused = self._idle_connection(origin), True
            if connection is None:
                connection, reused = await self._connect(origin, connect_timeout), False
            try:
                exchange = connection.send(head, body, expect_body=expect_body, read_timeout=read_timeout)
            except (OSError, RuntimeError) as exc:
                connection.close()
                if reused and attempt == 1:
                    continue
                raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
            try:
                while exchange.head is None and exchange.error is None:
                    await connection.wait(exchange)
            except BaseException:
                connection.release(exchange)
                raise
            if exchange.head is None:
                error = exchange.error
                # A pooled connection the server had closed: nothing of the request was answered.
                if reused and attempt == 1 and isinstance(error, httpx.RemoteProtocolError):
                    continue
                raise error  # type: ignore[misc]
            return connection, exchange
        raise AssertionError("unreachable")

    def _idle_connection(self, origin: Origin) -> Connection | None:
        stack = self._idle.get(origin)
        if not stack:
            return None
        now = self.loop.time()
        while stack and (stack[0].closed or now - stack[0].idle_since > self._expiry):
            stack.popleft().close()  # the oldest first: they expire before the recent ones
        while stack:
            connection = stack.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> Connection:
        scheme, host, port = origin
        tls = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await self.loop.create_connection(
                    lambda: Connection(self.loop), host, port, ssl=tls,
                    server_hostname=host if tls is not None else None)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc}") from exc
        self.connections_opened += 1
        connection.on_idle = lambda c: self._put_back(origin, c)
        return connection

    def _put_back(self, origin: Origin, connection: Connection) -> None:
        if self.closed:
            connection.close()
            return
        stack = self._idle.setdefault(origin, deque())
        if len(stack) >= self._max_idle:
            stack.popleft().close()
        connection.idle_since = self.loop.time()
        stack.append(connection)

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = default_ssl_context()
        return self._ssl_context

    def idle_count(self) -> int:
        return sum(len(stack) for stack in self._idle.values())

    def close(self) -> None:
        """Close every idle connection; responses still being read finish on theirs, which then close."""
        self.closed = True
        for stack in self._idle.values():
            while stack:
                connection = stack.pop()
                try:
                    connection.close()
                except RuntimeError:  # its loop is already closed
                    pass
        self._idle.clear()


def proxies_configured() -> bool:
    """Whether the environment names an HTTP proxy (``HTTPS_PROXY``, ``all_proxy``...: what httpx's
    ``trust_env`` honours; read as urllib's ``getproxies()`` does, which costs ~2 MB to import)."""
    return any(value and name.lower().endswith("_proxy") and name.lower() != "no_proxy"
               for name, value in os.environ.items())


def default_ssl_context() -> ssl.SSLContext:
    """The context httpx would verify certificates with (certifi's bundle, ``SSL_CERT_FILE``...)."""
    return httpx.create_ssl_context()


def request_head(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
            raise httpx.LocalProtocolError("line break in a header")
        parts += (name, b": ", value, _CRLF)
    parts.append(_CRLF)
    return b"".join(parts)


async def body_pieces(connection: Connection, exchange: _Exchange) -> AsyncIterator[bytes]:
    """The body as it arrives; raises the connection's error (httpx's classes) if it breaks."""
    try:
        while True:
            pieces = exchange.pieces
            if pieces:
                data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces.clear()
                exchange.size = 0
                yield data
                continue
            if exchange.complete:
                return
            if exchange.error is not None:
                raise exchange.error
            await connection.wait(exchange)
    finally:
        connection.release(exchange)


async def read_body(connection: Connection, exchange: _Exchange) -> bytes:
    """The whole body."""
    return b"".join([piece async for piece in body_pieces(connection, exchange)])


class _ResponseStream(httpx.AsyncByteStream):
    __slots__ = ("_connection", "_exchange")

    def __init__(self, connection: Connection, exchange: _Exchange) -> None:
        self._connection, self._exchange = connection, exchange

    def __aiter__(self) -> AsyncIterator[bytes]:
        return body_pieces(self._connection, self._exchange)

    async def aclose(self) -> None:
        # A response closed before its end drops the connection (the vendor stops generating).
        self._connection.release(self._exchange)


class HTTP1Transport(httpx.AsyncBaseTransport):
    """httpx's transport interface over :class:`ConnectionPool` (one pool per event loop)."""

    def __init__(self, *, max_idle_per_origin: int = 256, keepalive_expiry: float = 5.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._options: dict[str, Any] = {"max_idle_per_origin": max_idle_per_origin,
                                         "keepalive_expiry": keepalive_expiry, "ssl_context": ssl_context}
        self._pool: ConnectionPool | None = None

    @property
    def pool(self) -> ConnectionPool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop or pool.closed:
            pool = self._pool = ConnectionPool(loop, **self._options)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}")
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        timeout = request.extensions.get("timeout", {})
        head = request_head(request.method.encode(), url.raw_path, request.headers.raw)
        connection, exchange = await self.pool.request(
            (scheme, url.host, url.port or (443 if scheme == "https" else 80)), head, body,
            expect_body=request.method != "HEAD", connect_timeout=timeout.get("connect"),
            read_timeout=timeout.get("read"))
        status, headers = exchange.head  # type: ignore[misc]
        return httpx.Response(status, headers=headers, stream=_ResponseStream(connection, exchange),
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
