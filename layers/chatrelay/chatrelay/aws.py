"""The AWS calls the app makes (DynamoDB, SSM Parameter Store, Secrets Manager), over httpx.

Why not botocore: importing it and building one DynamoDB client took ~150 ms of every cold
start, most of it spent on modules the app never uses (the waiter and documentation
machinery that ``botocore.client`` imports, urllib3's compatibility layer, the JSON service
model and endpoint rules), in the Mangum function as in the streaming one
(bench/results/report.md). The three APIs the app calls are JSON APIs with a handful of
operations; this module speaks that protocol to them and keeps what the app relied on
botocore for:

- **Signing**: Signature Version 4 (``sign``), checked against botocore's own signer in
  tests/unit/test_aws.py.
- **Credentials**, in the SDKs' order: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
  ``AWS_SESSION_TOKEN``; then the container endpoint (``AWS_CONTAINER_CREDENTIALS_FULL_URI``
  with ``AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]``, or ``..._RELATIVE_URI``), which is what
  Lambda provides under SnapStart instead of the key variables; then, only when neither is
  set (a laptop with profiles or SSO), botocore's whole chain, imported at that moment.
  Expiring credentials are refreshed five minutes before they expire.
- **Endpoints**: an explicit URL, else ``AWS_ENDPOINT_URL_<SERVICE>`` / ``AWS_ENDPOINT_URL``
  (the SDKs' variables), else ``https://<service>.<region>.amazonaws.com`` and, in the China
  regions, ``.amazonaws.com.cn``.
- **Retries**, botocore's "standard" mode: up to ``max_attempts`` attempts for connection
  failures, timeouts, HTTP 500/502/503/504, throttling and transient error codes and
  DynamoDB's CRC32 mismatches, with full-jitter exponential backoff (random × min(2^n, 20) s)
  and the same retry quota (a failed retry costs 5 of 500 tokens, a timeout 10; a success
  refunds), so an outage is not multiplied by retries.
- **Errors**: an answer with an error is raised as :class:`AwsError`, whose ``response`` has
  botocore's ``ClientError.response`` shape (``["Error"]["Code"]``, ``["Error"]["Message"]``,
  the error's own members such as ``CancellationReasons``); no answer at all (after the
  retries) is :class:`AwsUnreachable`.
- **Idempotency**: ``TransactWriteItems`` gets a ``ClientRequestToken`` when none is given,
  the same on every retry, as botocore fills in idempotency tokens.
- **Blobs**: ``bytes`` go out base64-encoded and ``B`` / ``BS`` attribute values come back
  as ``bytes``, as with botocore.

Requests and responses are the APIs' own JSON (DynamoDB's typed attribute values, ``Key``,
``Item``...), so :class:`DynamoDBClient` takes the same arguments and returns the same
dictionaries as botocore's DynamoDB client, and either can sit behind ``store/table.py``.
No request is validated client-side: DynamoDB's ``ValidationException`` says what is wrong.

One client per process and service (``store/table.py`` caches the DynamoDB one); its
connection pool is created on the first call and can be closed and reopened
(``close()``): SnapStart closes it before the snapshot (``chatrelay/snapshot.py``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from chatrelay import http1

_UNSIGNED_HEADERS = frozenset({"user-agent", "expect", "transfer-encoding", "x-amzn-trace-id"})
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
    "PriorRequestNotComplete", "EC2ThrottledException",
})
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
MAX_BACKOFF = 20.0
_REFRESH_BEFORE = 300.0  # seconds before expiry at which credentials are fetched again


class AwsError(Exception):
    """An AWS API answered with an error; ``response`` is shaped like botocore's ``ClientError.response``."""

    def __init__(self, operation: str, response: dict[str, Any]) -> None:
        self.operation_name = operation
        self.response = response
        error = response.get("Error", {})
        super().__init__(f"An error occurred ({error.get('Code')}) when calling the {operation} operation: "
                         f"{error.get('Message', '')}")


class AwsUnreachable(Exception):
    """No answer from AWS (connection failed, timed out, unreadable answer) after the retries,
    or no credentials to sign with."""


# ---- credentials -----------------------------------------------------------------


class Credentials(msgspec.Struct, frozen=True):
    access_key: str
    secret_key: str = ""
    token: str | None = None
    expires_at: float | None = None
    """Epoch seconds; None for credentials that do not expire (the key variables)."""

    def __repr__(self) -> str:  # never the secret, never the token
        return f"Credentials(access_key={self.access_key!r}, expires_at={self.expires_at!r})"


class CredentialChain:
    """The process's credentials, resolved as the SDKs do (see the module docstring), cached."""

    def __init__(self, environ: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._transport = transport
        self._lock = threading.Lock()
        self._cached: Credentials | None = None
        self._botocore: Any = None

    def get(self) -> Credentials:
        with self._lock:
            cached = self._cached
            if cached is not None and (cached.expires_at is None or cached.expires_at - time.time() > _REFRESH_BEFORE):
                return cached
            if self._botocore is not None:
                return self._from_botocore_credentials(self._botocore)
            self._cached = self._resolve()
            return self._cached

    def fresh(self) -> Credentials | None:
        """The cached credentials while they are good, without blocking (None: call ``get()``)."""
        cached = self._cached
        if cached is not None and self._botocore is None and (
                cached.expires_at is None or cached.expires_at - time.time() > _REFRESH_BEFORE):
            return cached
        return None

    def reset(self) -> None:
        """Forget what was resolved (after a SnapStart restore: the next call resolves again)."""
        with self._lock:
            self._cached = None
            self._botocore = None

    def _resolve(self) -> Credentials:
        env = self._environ
        key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if key and secret:
            return Credentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)
        uri = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        relative = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        if uri or relative:
            return self._from_container(uri or f"http://169.254.170.2{relative}")
        return self._from_botocore()

    def _from_container(self, uri: str) -> Credentials:
        env = self._environ
        token = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        token_file = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        if not token and token_file:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        headers = {"Authorization": token} if token else {}
        last: Exception | None = None
        for attempt in range(3):
            try:
                # Lambda's endpoint is plain HTTP on localhost: no CA bundle to load for it.
                with httpx.Client(timeout=2.0, transport=self._transport, trust_env=False,
                                  verify=not uri.startswith("http://")) as http:
                    response = http.get(uri, headers=headers)
                response.raise_for_status()
                body = response.json()
                expires = datetime.fromisoformat(body["Expiration"]).timestamp() if body.get("Expiration") else None
                return Credentials(body["AccessKeyId"], body["SecretAccessKey"], body.get("Token"), expires)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                last = exc
                time.sleep(0.05 * (attempt + 1))
        raise AwsUnreachable(f"container credentials endpoint: {type(last).__name__}") from last

    def _from_botocore(self) -> Credentials:
        # Profiles, SSO, IMDS...: not how Lambda provides credentials, so botocore is imported only here.
        import botocore.session

        credentials = botocore.session.get_session().get_credentials()
        if credentials is None:
            raise AwsUnreachable("no AWS credentials found")
        self._botocore = credentials
        return self._from_botocore_credentials(credentials)

    @staticmethod
    def _from_botocore_credentials(credentials: Any) -> Credentials:
        frozen = credentials.get_frozen_credentials()  # botocore refreshes expiring ones itself
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


DEFAULT_CREDENTIALS = CredentialChain()


def reset() -> None:
    """Forget the process's resolved credentials (chatrelay/snapshot.py calls it after a restore)."""
    DEFAULT_CREDENTIALS.reset()


# ---- endpoints and signing -----------------------------------------------------------


def url_suffix(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def endpoint_url(service: str, region: str, explicit: str | None = None,
                 environ: Mapping[str, str] | None = None) -> str:
    """Where ``service`` is reached: ``explicit``, the SDKs' endpoint variables, or the regional endpoint."""
    env = os.environ if environ is None else environ
    configured = explicit or env.get(f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}") or env.get(
        "AWS_ENDPOINT_URL")
    return (configured or f"https://{service}.{region}.{url_suffix(region)}").rstrip("/")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(method: str, url: str, headers: Mapping[str, str], body: bytes, credentials: Credentials, *,
         region: str, service: str, now: datetime | None = None) -> dict[str, str]:
    """``headers`` plus ``Host``, ``X-Amz-Date``, ``X-Amz-Security-Token`` (with a session token)
    and the SigV4 ``Authorization`` header, for a request without a query string."""
    parts = urlsplit(url)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    signed = {name.lower(): " ".join(str(value).split()) for name, value in headers.items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = stamp
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    names = sorted(name for name in signed if name not in _UNSIGNED_HEADERS)
    canonical = "\n".join([
        method.upper(), parts.path or "/", "", "".join(f"{name}:{signed[name]}\n" for name in names),
        ";".join(names), hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{credentials.secret_key}".encode(), stamp[:8]), region), service),
                "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out = dict(headers)
    out.update({"Host": parts.netloc, "X-Amz-Date": stamp})
    if credentials.token:
        out["X-Amz-Security-Token"] = credentials.token
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                            f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return out


# ---- blobs -------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode_blobs(node: Any) -> Any:
    """``{"B": "<base64>"}`` / ``{"BS": [...]}`` attribute values as bytes, everywhere in an answer."""
    if isinstance(node, dict):
        if len(node) == 1:
            [(kind, value)] = node.items()
            if kind == "B" and isinstance(value, str):
                return {"B": base64.b64decode(value)}
            if kind == "BS" and isinstance(value, list):
                return {"BS": [base64.b64decode(v) for v in value]}
        return {name: _decode_blobs(value) for name, value in node.items()}
    if isinstance(node, list):
        return [_decode_blobs(value) for value in node]
    return node


# ---- retries -------------------------------------------------------------------------


class RetryQuota:
    """botocore's standard-mode retry quota: retries spend tokens, successes refund them."""

    def __init__(self, capacity: int = 500, retry_cost: int = 5, timeout_cost: int = 10) -> None:
        self.capacity = self.available = capacity
        self.retry_cost, self.timeout_cost = retry_cost, timeout_cost
        self._lock = threading.Lock()

    def acquire(self, timeout: bool) -> int:
        cost = self.timeout_cost if timeout else self.retry_cost
        with self._lock:
            if cost > self.available:
                return 0
            self.available -= cost
            return cost

    def release(self, amount: int) -> None:
        with self._lock:
            self.available = min(self.capacity, self.available + amount)


class _Retryable(Exception):
    def __init__(self, error: Exception, timeout: bool = False) -> None:
        super().__init__(str(error))
        self.error, self.timeout = error, timeout


def _backoff(attempt: int) -> float:
    """Full jitter after the ``attempt``-th failure (botocore's standard mode)."""
    return random.random() * min(2.0 ** (attempt - 1), MAX_BACKOFF)


def _close_on_its_loop(pool: http1.ConnectionPool) -> None:
    # asyncio's transports are closed on their own loop's thread: at once when called there (a
    # SnapStart hook runs on the loop, and the snapshot follows its answer) or the loop is not running.
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    try:
        if running is pool.loop or not pool.loop.is_running():
            pool.close()
        else:
            pool.loop.call_soon_threadsafe(pool.close)
    except RuntimeError:  # the loop is closed: its sockets went with it
        pass


# ---- the client ------------------------------------------------------------------------


class AwsJsonClient:
    """One AWS JSON-protocol API (``X-Amz-Target: <prefix>.<Operation>``) in one region."""

    def __init__(
        self,
        service: str,
        *,
        target_prefix: str,
        json_version: str,
        region: str,
        endpoint: str | None = None,
        credentials: CredentialChain | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        max_pool: int = 10,
        max_attempts: int = 5,
        check_crc32: bool = False,
        idempotency_tokens: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service, self.region = service, region
        self.endpoint = endpoint_url(service, region, endpoint)
        self._target_prefix = target_prefix
        self._content_type = f"application/x-amz-json-{json_version}"
        self._credentials = credentials or DEFAULT_CREDENTIALS
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._limits = httpx.Limits(max_connections=max_pool, max_keepalive_connections=max_pool)
        self._max_pool = max_pool
        self._blocking_only = transport is not None or http1.proxies_configured()
        """An injected httpx transport (tests), or a proxy from the environment, which the blocking
        path's httpx client honours: ``acall`` then runs ``call`` in a worker thread."""
        self.max_attempts = max_attempts
        self._check_crc32 = check_crc32
        self._idempotency_tokens = dict(idempotency_tokens or {})
        self._transport = transport
        self._sleep = sleep
        self.quota = RetryQuota()
        self._http: httpx.Client | None = None
        self._async_pool: http1.ConnectionPool | None = None
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        parts = urlsplit(self.endpoint)
        self._origin = (parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        self._lock = threading.Lock()
        self.pools_opened = 0
        """How many connection pools this client has opened (one, plus one after each ``close()``)."""

    # ---- the pool ----

    @property
    def http(self) -> httpx.Client:
        """The connection pool, opened on the first call (after ``close()``, opened afresh)."""
        http = self._http
        if http is None:
            with self._lock:
                if self._http is None:
                    self._http = httpx.Client(timeout=self._timeout, limits=self._limits, transport=self._transport)
                    self.pools_opened += 1
                http = self._http
        return http

    def _pool_here(self) -> http1.ConnectionPool:
        """The event loop's connection pool for ``acall`` (a loop other than the last one gets its own)."""
        loop = asyncio.get_running_loop()
        pool = self._async_pool
        if pool is None or pool.loop is not loop or pool.closed:
            pool = self._async_pool = http1.ConnectionPool(loop, max_idle_per_origin=self._max_pool)
            self.pools_opened += 1
        return pool

    @property
    def pool_open(self) -> bool:
        return self._http is not None or self._async_pool is not None

    def close(self) -> None:
        """Close the connection pools; the next call opens new ones."""
        with self._lock:
            http, self._http = self._http, None
            pool, self._async_pool = self._async_pool, None
        if http is not None:
            http.close()
        if pool is not None:
            _close_on_its_loop(pool)

    # ---- calls ----

    def call(self, operation: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The API's answer to ``operation`` (``ResponseMetadata`` added, as botocore adds it);
        raises AwsError for an error answer and AwsUnreachable when none came. Blocking."""
        body = self._body(operation, params)
        attempt, spent = 0, 0
        while True:
            attempt += 1
            try:
                answer = self._send(operation, body)
            except _Retryable as retry:
                spent = self._retry_or_raise(retry, attempt)
                self._sleep(_backoff(attempt))
                continue
            return self._succeeded(answer, attempt, spent)

    async def acall(self, operation: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``call`` on the event loop, over ``chatrelay/http1.py``'s pool: no worker thread, no httpx
        client per call (the app's DynamoDB calls take this path)."""
        if self._blocking_only:
            return await asyncio.to_thread(self.call, operation, params)
        body = self._body(operation, params)
        attempt, spent = 0, 0
        while True:
            attempt += 1
            try:
                answer = await self._asend(operation, body)
            except _Retryable as retry:
                spent = self._retry_or_raise(retry, attempt)
                await asyncio.sleep(_backoff(attempt))
                continue
            return self._succeeded(answer, attempt, spent)

    def _body(self, operation: str, params: Mapping[str, Any] | None) -> bytes:
        params = {name: value for name, value in (params or {}).items() if value is not None}
        token_member = self._idempotency_tokens.get(operation)
        if token_member and token_member not in params:
            params[token_member] = str(uuid.uuid4())  # the same token on every retry
        return json.dumps(params, separators=(",", ":"), default=_encode).encode()

    def _retry_or_raise(self, retry: _Retryable, attempt: int) -> int:
        """What the retry quota lends for another attempt; the error itself when no attempt is left."""
        spent = self.quota.acquire(retry.timeout) if attempt < self.max_attempts else 0
        if not spent:
            raise retry.error from None
        return spent

    def _succeeded(self, answer: dict[str, Any], attempt: int, spent: int) -> dict[str, Any]:
        self.quota.release(spent or 1)  # a success refunds the last retry's cost (or 1)
        answer.setdefault("ResponseMetadata", {})["RetryAttempts"] = attempt - 1
        return answer

    def _signed(self, operation: str, body: bytes, credentials: Credentials) -> dict[str, str]:
        return sign("POST", self.endpoint + "/", {"Content-Type": self._content_type,
                                                  "X-Amz-Target": f"{self._target_prefix}.{operation}"},
                    body, credentials, region=self.region, service=self.service)

    def _send(self, operation: str, body: bytes) -> dict[str, Any]:
        headers = self._signed(operation, body, self._credentials.get())
        try:
            response = self.http.post(self.endpoint + "/", content=body, headers=headers)
        except httpx.TransportError as exc:
            raise self._unreachable(operation, exc) from exc
        return self._answer(operation, response.status_code, response.headers, response.content)

    async def _asend(self, operation: str, body: bytes) -> dict[str, Any]:
        credentials = self._credentials.fresh() or await asyncio.to_thread(self._credentials.get)
        headers = self._signed(operation, body, credentials)
        headers["Content-Length"] = str(len(body))
        head = http1.request_head(b"POST", b"/", [(name.encode(), value.encode()) for name, value in headers.items()])
        try:
            connection, exchange = await self._pool_here().request(
                self._origin, head, body, connect_timeout=self._connect_timeout, read_timeout=self._read_timeout)
            content = await http1.read_body(connection, exchange)
        except httpx.TransportError as exc:
            raise self._unreachable(operation, exc) from exc
        status, raw_headers = exchange.head  # type: ignore[misc]
        return self._answer(operation, status, httpx.Headers(raw_headers), content)

    def _unreachable(self, operation: str, exc: httpx.TransportError) -> _Retryable:
        return _Retryable(AwsUnreachable(f"{self.service} {operation}: {type(exc).__name__}"),
                          timeout=isinstance(exc, httpx.TimeoutException))

    def _answer(self, operation: str, status: int, headers: httpx.Headers, content: bytes) -> dict[str, Any]:
        metadata = {"HTTPStatusCode": status, "RequestId": headers.get("x-amzn-requestid"),
                    "HTTPHeaders": dict(headers)}
        crc = headers.get("x-amz-crc32")
        if self._check_crc32 and crc is not None and zlib.crc32(content) & 0xFFFFFFFF != int(crc):
            raise _Retryable(AwsUnreachable(f"{self.service} {operation}: CRC32 mismatch"))
        try:
            parsed = json.loads(content) if content else {}
        except ValueError:
            parsed = None
        if status < 300 and isinstance(parsed, dict):
            answer = _decode_blobs(parsed) if b'"B' in content else parsed
            answer["ResponseMetadata"] = metadata
            return answer
        error = self._error(operation, status, headers, parsed if isinstance(parsed, dict) else {}, metadata)
        code = error.response["Error"]["Code"]
        if status in RETRYABLE_STATUS or code in THROTTLING_CODES or code in TRANSIENT_CODES:
            raise _Retryable(error)
        raise error

    @staticmethod
    def _error(operation: str, status: int, headers: httpx.Headers, body: dict[str, Any],
               metadata: dict[str, Any]) -> AwsError:
        code = str(body.get("__type") or headers.get("x-amzn-errortype", "")).split(":")[0]
        code = code.rsplit("#", 1)[-1] or str(status)
        message = body.get("message") or body.get("Message") or ""
        members = {name: _decode_blobs(value) for name, value in body.items()
                   if name not in ("__type", "message", "Message")}
        return AwsError(operation, {"Error": {"Code": code, "Message": message}, "ResponseMetadata": metadata,
                                    **members})


class DynamoDBClient(AwsJsonClient):
    """DynamoDB's API (version 2012-08-10) with botocore's method names, arguments and answers."""

    def __init__(self, *, region: str, endpoint: str | None = None, **options: Any) -> None:
        super().__init__("dynamodb", target_prefix="DynamoDB_20120810", json_version="1.0", region=region,
                         endpoint=endpoint, check_crc32=True,
                         idempotency_tokens={"TransactWriteItems": "ClientRequestToken"}, **options)

    def get_item(self, **params: Any) -> dict[str, Any]:
        return self.call("GetItem", params)

    def put_item(self, **params: Any) -> dict[str, Any]:
        return self.call("PutItem", params)

    def update_item(self, **params: Any) -> dict[str, Any]:
        return self.call("UpdateItem", params)

    def delete_item(self, **params: Any) -> dict[str, Any]:
        return self.call("DeleteItem", params)

    def query(self, **params: Any) -> dict[str, Any]:
        return self.call("Query", params)

    def transact_write_items(self, **params: Any) -> dict[str, Any]:
        return self.call("TransactWriteItems", params)

    def batch_write_item(self, **params: Any) -> dict[str, Any]:
        return self.call("BatchWriteItem", params)


def ssm_client(region: str, **options: Any) -> AwsJsonClient:
    return AwsJsonClient("ssm", target_prefix="AmazonSSM", json_version="1.1", region=region, **options)


def secrets_manager_client(region: str, **options: Any) -> AwsJsonClient:
    return AwsJsonClient("secretsmanager", target_prefix="secretsmanager", json_version="1.1", region=region,
                         **options)
