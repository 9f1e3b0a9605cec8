"""The lean HTTP/1.1 transport (chatrelay/http1.py) against a raw socket server on 127.0.0.1.

The server writes exactly the bytes a test scripts, split where the test says, so framing
(chunked, Content-Length, close-delimited, 1xx), reuse, a stale pooled connection, the read
timeout and dropping an unfinished response are all checked on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable

import httpx
import pytest

from chatrelay.http1 import HTTP1Transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def on_a_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    @functools.wraps(test)  # pytest reads the test's own signature, so fixtures still arrive
    def run(**fixtures: object) -> None:
        asyncio.run(asyncio.wait_for(test(**fixtures), 20))

    return run


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


@contextlib.asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None):
    connections: list[asyncio.StreamWriter] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", connections
    finally:
        server.close()
        for writer in connections:
            writer.close()


def client(ssl_context: ssl.SSLContext | None = None, **timeouts: float) -> tuple[httpx.AsyncClient, HTTP1Transport]:
    transport = HTTP1Transport(ssl_context=ssl_context)
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeouts.get("read", 5.0),
                                                                       connect=2.0)), transport


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@on_a_loop
async def test_chunked_body_split_anywhere_and_connection_reused():
    body = chunked(b"data: one\n\n", b"data: \xe4\xbd\xa0\n\n", b"x" * 70000)
    cuts = [1, 3, 5, 9, 17, 40, 1000]  # inside size lines, CRLFs and data

    async def handler(reader, writer):
        for _ in range(2):
            _, payload = await read_request(reader)
            assert payload == b'{"q":1}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            start = 0
            for cut in cuts:
                writer.write(body[start:cut])
                await writer.drain()
                await asyncio.sleep(0)
                start = cut
            writer.write(body[start:])
            await writer.drain()

    async with serving(handler) as (url, connections):
        http, transport = client()
        async with http:
            for _ in range(2):
                async with http.stream("POST", url + "/v1/x", json={"q": 1}) as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"] == "text/event-stream"
                    got = b"".join([piece async for piece in response.aiter_bytes()])
                assert got == b"data: one\n\n" + "data: 你\n\n".encode() + b"x" * 70000
            assert len(connections) == 1
            assert transport.pool.connections_opened == 1


@on_a_loop
async def test_content_length_and_close_delimited_and_informational():
    async def handler(reader, writer):
        head, _ = await read_request(reader)
        if b"/length" in head:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nab")
            await writer.drain()
            writer.write(b"cde")
            await writer.drain()
            head, _ = await read_request(reader)
        assert b"/close" in head
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async with serving(handler) as (url, connections):
        http, _ = client()
        async with http:
            response = await http.get(url + "/length")
            assert (response.status_code, response.content) == (404, b"abcde")
            response = await http.get(url + "/close")
            assert (response.status_code, response.content) == (200, b"until the end")
        assert len(connections) == 1


@on_a_loop
async def test_a_stale_pooled_connection_is_replaced_once():
    served = []

    async def handler(reader, writer):
        await read_request(reader)
        served.append(1)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        if len(served) == 1:
            # The server's keep-alive timeout fires just as the next request arrives: it closes
            # without answering, and the client had no way to see it coming.
            await read_request(reader)
            writer.transport.abort()

    async with serving(handler) as (url, connections):
        http, transport = client()
        async with http:
            assert (await http.get(url)).content == b"ok"
            assert (await http.get(url)).content == b"ok"
            assert transport.pool.connections_opened == 2
        assert len(served) == 2


@on_a_loop
async def test_a_fresh_connection_closed_without_an_answer_is_an_error():
    async def handler(reader, writer):
        await read_request(reader)
        writer.transport.abort()

    async with serving(handler) as (url, connections):
        http, _ = client()
        async with http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.post(url, content=b"x")
        assert len(connections) == 1  # not sent twice: only a reused connection is retried


@on_a_loop
async def test_read_timeout_between_pieces():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with serving(handler) as (url, _):
        http, _ = client(read=0.3)
        async with http:
            async with http.stream("GET", url) as response:
                pieces = response.aiter_bytes()
                assert await pieces.__anext__() == b"first"
                with pytest.raises(httpx.ReadTimeout):
                    await pieces.__anext__()


@on_a_loop
async def test_a_response_closed_before_its_end_drops_the_connection():
    closed = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        assert await reader.read() == b""  # the client hung up: the vendor would stop generating
        closed.set()

    async with serving(handler) as (url, _):
        http, transport = client()
        async with http:
            async with http.stream("GET", url) as response:
                async for _ in response.aiter_bytes():
                    break
            await asyncio.wait_for(closed.wait(), 5)
            assert transport.pool.idle_count() == 0


@on_a_loop
async def test_connection_refused_and_broken_responses_are_httpx_errors():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await writer.drain()
        writer.close()

    http, _ = client()
    async with http:
        with pytest.raises(httpx.ConnectError):
            await http.get("http://127.0.0.1:9/")
        async with serving(handler) as (url, _):
            with pytest.raises(httpx.ReadError):
                await http.get(url)

    async def garbage(reader, writer):
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async with serving(garbage) as (url, _):
        http, _ = client()
        async with http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(url)


@on_a_loop
async def test_connection_close_header_is_not_reused():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na")
        await writer.drain()
        writer.close()

    async with serving(handler) as (url, connections):
        http, transport = client()
        async with http:
            for _ in range(3):
                assert (await http.get(url)).content == b"a"
            assert transport.pool.connections_opened == 3
        assert len(connections) == 3


def self_signed(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command line."""
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run([shutil.which("openssl") or "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@on_a_loop
async def test_tls_is_verified_and_gzip_is_decoded_by_httpx(tmp_path):
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=cert)
    body = gzip.compress(b"data: compressed\n\n")

    async def handler(reader, writer):
        head, _ = await read_request(reader)
        assert b"accept-encoding: gzip" in head.lower()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + chunked(body[:7], body[7:]))
        await writer.drain()

    async with serving(handler, tls=server_tls) as (url, _):
        http, _ = client(ssl_context=trusting)
        async with http:
            response = await http.get(url)
            assert response.content == b"data: compressed\n\n"
        http, _ = client()  # certifi's bundle does not know this CA
        async with http:
            with pytest.raises(httpx.ConnectError):
                await http.get(url)


@contextlib.asynccontextmanager
async def http_proxy():
    """A forward proxy that answers every request itself, and records the request lines it got."""
    seen: list[bytes] = []

    async def handler(reader, writer):
        head, _ = await read_request(reader)
        seen.append(head.split(b"\r\n", 1)[0])
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}')
        await writer.drain()

    async with serving(handler) as (url, _):
        yield url, seen


@on_a_loop
async def test_a_proxy_from_the_environment_is_honoured_by_vendors_and_aws(monkeypatch):
    from chatrelay import aws
    from chatrelay.providers import http as vendor_http

    async with http_proxy() as (proxy, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        vendor = vendor_http.new_client(2.0, 5.0)
        async with vendor:
            assert (await vendor.get("http://vendor.test/v1/models")).json() == {}
        keys = aws.CredentialChain(environ={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
        dynamodb = aws.DynamoDBClient(region="us-east-1", endpoint="http://dynamodb.test", credentials=keys)
        answer = await dynamodb.acall("GetItem", {"TableName": "t", "Key": {}})
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
        dynamodb.close()
    # Both went through the proxy (absolute-form request lines): nothing could resolve these hosts.
    assert seen == [b"GET http://vendor.test/v1/models HTTP/1.1", b"POST http://dynamodb.test/ HTTP/1.1"]


@on_a_loop
async def test_vendor_cookies_are_not_kept_between_turns():
    """One client serves every user's turns: a cookie one answer sets is not sent with the next request."""
    from chatrelay.providers import http as vendor_http

    heads = []

    async def handler(reader, writer):
        while True:
            head, _ = await read_request(reader)
            heads.append(head.lower())
            writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: session=user-a; Path=/\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()

    async with serving(handler) as (url, _):
        vendor = vendor_http.new_client(2.0, 5.0)
        async with vendor:
            await vendor.get(url + "/v1/a")
            await vendor.get(url + "/v1/b")
    assert len(heads) == 2 and b"cookie" not in heads[1]


@on_a_loop
async def test_the_aws_client_closes_its_pool_at_once_when_closed_on_its_loop():
    """SnapStart's before-snapshot hook runs on the loop and the snapshot follows its answer: the pooled
    connections must be gone by then, not on some later iteration."""
    from chatrelay import aws

    closed = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        assert await reader.read() == b""
        closed.set()

    async with serving(handler) as (url, _):
        keys = aws.CredentialChain(environ={"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})
        dynamodb = aws.DynamoDBClient(region="us-east-1", endpoint=url, credentials=keys)
        await dynamodb.acall("GetItem", {"TableName": "t", "Key": {}})
        pool = dynamodb._pool_here()
        assert pool.idle_count() == 1
        dynamodb.close()
        assert pool.closed and pool.idle_count() == 0 and not dynamodb.pool_open
        await asyncio.wait_for(closed.wait(), 5)
