"""DynamoDB's JSON protocol, spoken on the event loop: how the chat table reaches DynamoDB.

Every DynamoDB call of the app is one of five operations (``GetItem``, ``UpdateItem``,
``TransactWriteItems``, ``Query``, ``BatchWriteItem``) whose requests ``store/table.py``
already builds in DynamoDB's own JSON shape (attribute values in wire form). On the wire
each is one HTTP/1.1 request:

    POST / HTTP/1.1
    X-Amz-Target: DynamoDB_20120810.<Operation>
    Content-Type: application/x-amz-json-1.0
    Authorization: AWS4-HMAC-SHA256 ...             (Signature Version 4)

answered by ``200`` and the operation's JSON, or an error status and
``{"__type": "...#<Code>", "message": ...}``. :class:`DynamoDBHTTP` sends exactly that,
on pooled keep-alive connections owned by the event loop (``asyncio.Protocol``; TLS for
https endpoints), and translates errors into ``chatrelay.errors``.

Why not botocore, which the app used before: botocore is blocking, so each call ran in a
worker thread, and per call it spends about a millisecond of CPU (parameter validation,
the endpoint rule set, event hooks, signing, urllib3, response parsing) while holding the
GIL the event loop needs. At one checkpoint per second per stream that was the largest
CPU cost per relayed token after the HTTP layers, and it delayed the upstream request of
a new turn (the start write's thread competed with it for the GIL). Here a call costs
tens of microseconds, on the loop, with no thread hand-off; and the process no longer
loads botocore's DynamoDB service model (about 18 MB of RSS). bench/results/report.md
has the measured effect.

What is kept from botocore's behaviour (standard retry mode, the settings the app used):
up to 5 attempts; connection errors, timeouts, 500/502/503/504, throttling and transient
error codes, and a response whose ``x-amz-crc32`` does not match its body are retried
after ``random() * min(scale * 2**i, 20)`` seconds (scale 1 s when throttled, 25 ms
otherwise); connect timeout 3 s, read timeout 10 s. A call that is cancelled while its
request is in flight does not abort it: the response is still read (the connection then
goes back to the pool), as a worker thread used to finish it. Credentials come from the
environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``: what
Lambda sets); without them, botocore's credential chain is loaded once, lazily (profiles,
containers, instance metadata) and refreshed off the loop. The endpoint is
``DYNAMODB_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL`` if set,
else the region's regional endpoint; for partitions or options this module does not
know (FIPS, dual-stack, ISO regions), botocore's resolver names it. Not supported: HTTP
proxies (``HTTPS_PROXY``): ``store/table.py`` falls back to botocore then.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import re
import ssl
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chatrelay import __version__, errors

API_VERSION = "DynamoDB_20120810"
CONTENT_TYPE = "application/x-amz-json-1.0"
SERVICE = "dynamodb"
MAX_ATTEMPTS = 5
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
MAX_IDLE_CONNECTIONS = 32
_MAX_HEAD = 64 * 1024

# botocore's standard retry mode (botocore/retries/standard.py), for DynamoDB.
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
    "PriorRequestNotComplete", "EC2ThrottledException",
})
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
_THROTTLING_SCALE, _OTHER_SCALE, _MAX_BACKOFF = 1.0, 0.025, 20.0


# ---- errors ---------------------------------------------------------------------


def error_for(code: str, message: str = "", reasons: Sequence[Mapping[str, Any]] | None = None) -> errors.ChatRelayError:
    """A DynamoDB error code (and a cancelled transaction's reasons) as the app's error."""
    if code == "ConditionalCheckFailedException":
        return errors.ConditionFailed()
    if code == "TransactionCanceledException":
        return errors.TransactionCanceled(reasons=tuple(reason.get("Code") for reason in reasons or ()))
    if code == "ValidationException":
        return errors.InvalidRequest(message or "invalid")
    return errors.StorageError(f"DynamoDB {code}")


class _Broken(Exception):
    """The connection failed before the whole response arrived (retryable)."""


# ---- credentials and endpoint ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def environment_credentials(env: Mapping[str, str] = os.environ) -> Credentials | None:
    """The keys the environment holds (Lambda sets all three), as botocore's first provider reads them."""
    access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        return None
    return Credentials(access, secret, env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN") or None)


class _BotocoreCredentials:
    """botocore's credential chain, loaded on first use (only when the environment has no keys)."""

    def __init__(self) -> None:
        self._source: Any = None

    async def get(self) -> Credentials:
        if self._source is None:
            import botocore.session

            self._source = await asyncio.to_thread(botocore.session.get_session().get_credentials)
            if self._source is None:
                raise errors.StorageError("DynamoDB NoCredentialsError")
        source = self._source
        refresh_needed = getattr(source, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            frozen = await asyncio.to_thread(source.get_frozen_credentials)  # may fetch: off the loop
        else:
            frozen = source.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


_PARTITIONS = (  # (region pattern, DNS suffix): the partitions whose DynamoDB endpoint is dynamodb.<region>.<suffix>
    (re.compile(r"us-gov-\w+-\d+"), "amazonaws.com"),
    (re.compile(r"cn-\w+-\d+"), "amazonaws.com.cn"),
    (re.compile(r"(us|eu|ap|sa|ca|me|af|il|mx)-\w+-\d+"), "amazonaws.com"),
)


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "true"


def endpoint_for(region: str, endpoint_url: str | None = None, env: Mapping[str, str] = os.environ) -> str:
    """The URL DynamoDB is reached at, as botocore would choose it for these settings."""
    configured = endpoint_url or env.get("AWS_ENDPOINT_URL_DYNAMODB") or env.get("AWS_ENDPOINT_URL")
    if configured:
        return configured
    if not (_flag(env, "AWS_USE_FIPS_ENDPOINT") or _flag(env, "AWS_USE_DUALSTACK_ENDPOINT")):
        for pattern, suffix in _PARTITIONS:
            if pattern.fullmatch(region):
                return f"https://dynamodb.{region}.{suffix}"
    import botocore.session  # an unusual partition or option: botocore's rule set knows it

    return botocore.session.get_session().create_client("dynamodb", region_name=region).meta.endpoint_url


def proxy_configured(env: Mapping[str, str] = os.environ) -> bool:
    return any(env.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"))


# ---- Signature Version 4 ---------------------------------------------------------


class Signer:
    """SigV4 for DynamoDB's one request shape (POST /, no query, four or five signed headers)."""

    def __init__(self, region: str, host: str, path: str = "/") -> None:
        self.region = region
        self.host = host
        self.path = path
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, secret: str, date: str) -> bytes:
        key = self._keys.get((secret, date))
        if key is None:
            key = ("AWS4" + secret).encode()
            for part in (date, self.region, SERVICE, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, date): key}  # one day's key is all that is ever needed
        return key

    def headers(self, target: str, body: bytes, credentials: Credentials, now: float | None = None) -> list[tuple[str, str]]:
        """The signed headers of a request (Host, X-Amz-Date, X-Amz-Target, Content-Type, the token, Authorization)."""
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        date = amz_date[:8]
        token = credentials.token
        canonical_headers = f"content-type:{CONTENT_TYPE}\nhost:{self.host}\nx-amz-date:{amz_date}\n"
        signed = "content-type;host;x-amz-date;"
        if token:
            canonical_headers += f"x-amz-security-token:{token}\n"
            signed += "x-amz-security-token;"
        canonical_headers += f"x-amz-target:{target}\n"
        signed += "x-amz-target"
        canonical = f"POST\n{self.path}\n\n{canonical_headers}\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        scope = f"{date}/{self.region}/{SERVICE}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._key(credentials.secret_key, date), to_sign.encode(), hashlib.sha256).hexdigest()
        headers = [("Host", self.host), ("X-Amz-Date", amz_date), ("X-Amz-Target", target),
                   ("Content-Type", CONTENT_TYPE)]
        if token:
            headers.append(("X-Amz-Security-Token", token))
        headers.append(("Authorization", f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                                         f"SignedHeaders={signed}, Signature={signature}"))
        return headers


# ---- JSON -------------------------------------------------------------------------


def _bytes_as_base64(value: object) -> str:
    # The JSON protocol carries binary attributes ("B", "BS") as base64.
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def encode(request: Mapping[str, Any]) -> bytes:
    return json.dumps(request, ensure_ascii=False, separators=(",", ":"), default=_bytes_as_base64).encode()


# ---- HTTP/1.1 on asyncio --------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time; the response is parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._buffer = bytearray()
        self._status = 0
        self._headers: dict[str, str] | None = None
        self._length = -1
        self._chunked = False
        self._body = bytearray()

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._headers is not None and self._length < 0 and not self._chunked:
                self._finish(bytes(self._buffer))  # a body delimited by the end of the connection
            else:
                self._fail(_Broken("connection closed before the response ended"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing was asked: the server is closing or confused
            self.close()
            return
        self._buffer += data
        try:
            self._parse()
        except ValueError as exc:
            self._fail(_Broken(f"malformed response: {exc}"))
            self.close()

    # the request

    def request(self, payload: bytes, timeout: float) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._status, self._headers, self._length, self._chunked = 0, None, -1, False
        self._buffer.clear()
        self._body.clear()
        self._timer = loop.call_later(timeout, self._timed_out)
        assert self.transport is not None
        self.transport.write(payload)
        return waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(TimeoutError("DynamoDB did not answer in time"))
        self.close()

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.closed = True
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _finish(self, body: bytes) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        headers = self._headers or {}
        if headers.get("connection", "").lower() == "close" or self._buffer:
            self.close()  # no reuse after "close", or after bytes nobody asked for
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, headers, body))

    def _parse(self) -> None:
        buffer = self._buffer
        if self._headers is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise ValueError("response head too large")
                return
            lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            del buffer[: end + 4]
            version, _, rest = lines[0].partition(" ")
            if not version.startswith("HTTP/1."):
                raise ValueError("not HTTP/1.x")
            self._status = int(rest[:3])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            self._headers = headers
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._chunked = True
            elif "content-length" in headers:
                self._length = int(headers["content-length"])
        if self._chunked:
            self._parse_chunks()
        elif self._length >= 0 and len(buffer) >= self._length:
            body = bytes(buffer[: self._length])
            del buffer[: self._length]
            self._finish(body)

    def _parse_chunks(self) -> None:
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(buffer[:line_end]).split(b";", 1)[0], 16)
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0 and buffer[line_end : line_end + 4] != b"\r\n\r\n":
                    return
                del buffer[: (trailer_end + 4) if trailer_end >= 0 else line_end + 4]
                self._finish(bytes(self._body))
                return
            if len(buffer) < line_end + 2 + size + 2:
                return
            self._body += buffer[line_end + 2 : line_end + 2 + size]
            del buffer[: line_end + 2 + size + 2]


class _Pool:
    """The keep-alive connections to one endpoint, on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, tls: ssl.SSLContext | None,
                 max_connections: int, connect_timeout: float) -> None:
        self.loop = loop
        self._host, self._port, self._tls = host, port, tls
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._connect_timeout = connect_timeout

    async def request(self, payload: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
        await self._slots.acquire()
        try:
            connection = await self._connection()
        except BaseException:
            self._slots.release()
            raise
        waiter = connection.request(payload, timeout)
        # Settled by the protocol's callbacks, whether or not this call is still waiting for it.
        waiter.add_done_callback(lambda _: self._release(connection))
        return await asyncio.shield(waiter)

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        server_hostname = self._host if self._tls is not None else None
        _, connection = await asyncio.wait_for(
            self.loop.create_connection(_Connection, self._host, self._port, ssl=self._tls,
                                        server_hostname=server_hostname),
            self._connect_timeout)
        return connection

    def _release(self, connection: _Connection) -> None:
        self._slots.release()
        if not connection.closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
            self._idle.append(connection)
        elif not connection.closed:
            connection.close()

    def close(self) -> None:
        for connection in self._idle:
            try:
                connection.close()
            except RuntimeError:  # its loop is gone
                pass
        self._idle.clear()


def _tls_context() -> ssl.SSLContext:
    cafile = os.environ.get("AWS_CA_BUNDLE")
    if not cafile:
        try:
            import certifi  # botocore's default bundle too

            cafile = certifi.where()
        except ImportError:
            cafile = None
    return ssl.create_default_context(cafile=cafile)


class DynamoDBHTTP:
    """DynamoDB's JSON protocol over keep-alive HTTP/1.1 connections on the running event loop."""

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        credentials: Credentials | None = None,
        max_connections: int = 64,
        max_attempts: int = MAX_ATTEMPTS,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint_for(region, endpoint_url)
        url = urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) endpoint: {self.endpoint!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._tls = _tls_context() if url.scheme == "https" else None
        default_port = (url.scheme == "https" and self._port == 443) or (url.scheme == "http" and self._port == 80)
        netloc = self._host if default_port else f"{self._host}:{self._port}"
        self.signer = Signer(region, netloc, url.path or "/")
        self._static = credentials or environment_credentials()
        self._chain = None if self._static is not None else _BotocoreCredentials()
        self._max_connections = max_connections
        self._max_attempts = max_attempts
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool: _Pool | None = None
        self._user_agent = f"chatrelay/{__version__}"

    def _pool_here(self) -> _Pool:
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop:
            if pool is not None:
                pool.close()  # connections belong to the loop that opened them
            pool = self._pool = _Pool(loop, self._host, self._port, self._tls, self._max_connections,
                                      self._connect_timeout)
        return pool

    async def _credentials(self) -> Credentials:
        if self._static is not None:
            return self._static
        assert self._chain is not None
        return await self._chain.get()

    def _payload(self, target: str, body: bytes, credentials: Credentials) -> bytes:
        head = [f"POST {self.signer.path} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in self.signer.headers(target, body, credentials)]
        head += [f"Content-Length: {len(body)}", f"User-Agent: {self._user_agent}", "Accept-Encoding: identity", "", ""]
        return "\r\n".join(head).encode() + body

    async def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """One operation; the parsed JSON answer, or a ``chatrelay.errors`` error."""
        target = f"{API_VERSION}.{operation}"
        body = encode(request)
        attempt = 0
        while True:
            attempt += 1
            throttled = False
            try:
                payload = self._payload(target, body, await self._credentials())
                status, headers, answer = await self._pool_here().request(payload, self._read_timeout)
            except (OSError, TimeoutError, _Broken) as exc:
                failure: errors.ChatRelayError = errors.StorageError(f"DynamoDB {type(exc).__name__}")
            else:
                crc = headers.get("x-amz-crc32")
                if crc is not None and crc.isdigit() and zlib.crc32(answer) & 0xFFFFFFFF != int(crc):
                    failure = errors.StorageError("DynamoDB CRC32 mismatch")
                elif status == 200:
                    return json.loads(answer) if answer else {}
                else:
                    code, message, reasons = _error_of(answer, status)
                    failure = error_for(code, message, reasons)
                    throttled = code in THROTTLING_CODES or status == 429
                    if not (throttled or code in TRANSIENT_CODES or status in TRANSIENT_STATUSES):
                        raise failure
            if attempt >= self._max_attempts:
                raise failure
            scale = _THROTTLING_SCALE if throttled else _OTHER_SCALE
            await asyncio.sleep(random.random() * min(scale * 2 ** (attempt - 1), _MAX_BACKOFF))

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _error_of(answer: bytes, status: int) -> tuple[str, str, list[Mapping[str, Any]] | None]:
    """(code, message, cancellation reasons) of an error answer."""
    try:
        parsed = json.loads(answer) if answer else {}
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    code = str(parsed.get("__type") or f"HTTP{status}").rsplit("#", 1)[-1]
    message = str(parsed.get("message") or parsed.get("Message") or "")
    reasons = parsed.get("CancellationReasons")
    return code, message, reasons if isinstance(reasons, list) else None
