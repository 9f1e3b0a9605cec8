"""Amazon Bedrock ``ConverseStream`` through boto3 ``bedrock-runtime``.

Credentials come from the default chain (the Lambda's IAM role; no API key on
AWS). boto3 blocks, so each answer runs its ``converse_stream`` call and the
iteration of the returned ``EventStream`` in a worker thread of a pool owned by
this provider (never the loop's default executor, which DNS lookups need), and
hands the events to the event loop through an ``asyncio.Queue``. Closing the
async iterator (the relay's stop, a client gone, a timeout) sets a stop flag and
closes the ``EventStream``, which closes the HTTP response: Bedrock stops
generating, and the worker's blocked read ends.

Events relayed: ``contentBlockDelta`` ``text`` → answer, ``reasoningContent.text``
→ reasoning; ``messageStop`` gives the stop reason and ``metadata`` the usage,
yielded together as the final delta. botocore's exceptions are translated here:

    ThrottlingException                         UpstreamRateLimited (429)
    ServiceUnavailableException, ModelNotReady  UpstreamUnavailable (retryable)
    InternalServerException, ModelStreamError   UpstreamHTTPError 500 (retryable)
    ModelTimeoutException, read/connect timeout UpstreamTimeout
    AccessDenied, UnrecognizedClient, no creds  UpstreamAuthError
    ValidationException, ResourceNotFound ...   UpstreamHTTPError 4xx (upstream_error)
    connection errors                           UpstreamUnavailable before the stream,
                                                UpstreamDisconnected once it began

In-stream exception frames (``throttlingException`` ...) arrive from botocore as
``EventStreamError`` (a ``ClientError``) and map the same way. botocore's own
retries are off (``total_max_attempts=1``): failing fast lets the failover
provider move to the next vendor instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chatrelay import errors
from chatrelay.providers.base import ChatDelta, ChatMessage, StreamParams, Usage
from chatrelay.providers.messages import alternating, split_system

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}

_RATE_LIMITED = {"ThrottlingException", "TooManyRequestsException"}
_UNAVAILABLE = {"ServiceUnavailableException", "ModelNotReadyException"}
_SERVER = {"InternalServerException", "ModelStreamErrorException", "InternalFailure"}
_TIMEOUT = {"ModelTimeoutException"}
_AUTH = {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
         "ExpiredTokenException", "ExpiredToken", "MissingAuthenticationTokenException", "IncompleteSignature",
         "InvalidClientTokenId", "SignatureDoesNotMatch"}

_EVENT, _END, _ERROR = "event", "end", "error"


class BedrockConverseProvider:
    """One Bedrock model id per request (``StreamParams.model``), one boto3 client per provider."""

    def __init__(
        self,
        name: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        client: Any | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        max_threads: int = 64,
    ) -> None:
        self.name = name
        self._client = client
        self._client_lock = threading.Lock()
        self._region = region
        self._endpoint_url = endpoint_url
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_threads = max_threads
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix=f"bedrock-{name}")

    def client(self) -> Any:
        """The boto3 client, built on first use (in a worker thread: building one takes a while)."""
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.session.Session().client(
                    "bedrock-runtime",
                    region_name=self._region,
                    endpoint_url=self._endpoint_url,
                    config=Config(
                        connect_timeout=self._connect_timeout,
                        read_timeout=self._read_timeout,
                        retries={"mode": "standard", "total_max_attempts": 1},
                        max_pool_connections=self._max_threads,
                    ),
                )
            return self._client

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def request(self, messages: Sequence[ChatMessage], params: StreamParams) -> dict[str, Any]:
        system, rest = split_system(messages)
        request: dict[str, Any] = {
            "modelId": params.model,
            "messages": [{"role": m.role, "content": [{"text": m.content}]} for m in alternating(rest)],
        }
        if system:
            request["system"] = [{"text": system}]
        inference: dict[str, Any] = {}
        if params.max_tokens is not None:
            inference["maxTokens"] = params.max_tokens
        if params.temperature is not None:
            inference["temperature"] = params.temperature
        if inference:
            request["inferenceConfig"] = inference
        request.update(params.extra)
        return request

    async def stream(self, messages: Sequence[ChatMessage], params: StreamParams) -> AsyncIterator[ChatDelta]:
        request = self.request(messages, params)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        opened: list[Any] = []  # the EventStream, once converse_stream returned

        def hand_over(kind: str, item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
            except RuntimeError:  # the loop is gone (shutdown): nobody is listening
                stop.set()

        def pump() -> None:
            started = False
            try:
                events = self.client().converse_stream(**request)["stream"]
                opened.append(events)
                if stop.is_set():
                    return
                started = True
                for event in events:
                    if stop.is_set():
                        return
                    hand_over(_EVENT, event)
                hand_over(_END, None)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, raised there as our error
                if not stop.is_set():
                    hand_over(_ERROR, translate(self.name, exc, started=started))
            finally:
                for events in opened:
                    _close_quietly(events)

        future = loop.run_in_executor(self._executor, pump)
        stop_reason: str | None = None
        try:
            while True:
                kind, item = await queue.get()
                if kind == _ERROR:
                    raise item
                if kind == _END:
                    break
                if "contentBlockDelta" in item:
                    delta = item["contentBlockDelta"].get("delta") or {}
                    if delta.get("text"):
                        yield ChatDelta(text=delta["text"])
                    reasoning = (delta.get("reasoningContent") or {}).get("text")
                    if reasoning:
                        yield ChatDelta(reasoning=reasoning)
                elif "messageStop" in item:
                    stop_reason = item["messageStop"].get("stopReason") or "end_turn"
                elif "metadata" in item:
                    usage = Usage.from_counts(item["metadata"].get("usage"), "inputTokens", "outputTokens",
                                              "totalTokens")
                    yield ChatDelta(finish_reason=STOP_REASONS.get(stop_reason or "end_turn", stop_reason),
                                    usage=usage)
                    return
            if stop_reason is None:
                raise errors.UpstreamDisconnected(f"{self.name}: stream ended before messageStop")
            yield ChatDelta(finish_reason=STOP_REASONS.get(stop_reason, stop_reason))
        finally:
            stop.set()
            if not future.done():
                for events in opened:
                    _interrupt(events)  # the worker's read ends; it closes the stream; Bedrock stops


def _close_quietly(events: Any) -> None:
    with contextlib.suppress(Exception):  # closing a response that may already be broken
        events.close()


def _interrupt(events: Any) -> None:
    """Wake a worker blocked reading ``events``, from the event loop, without blocking it.

    ``EventStream.close()`` cannot be called on the loop: it waits for the lock of
    the buffered reader the worker is blocked in, i.e. for the next byte from
    Bedrock. Shutting the socket down is lock-free and makes the blocked ``recv``
    return at once; the worker then closes the stream itself. The socket is reached
    through botocore's raw urllib3 response (``EventStream._raw_stream``, not public
    API); when it cannot be reached, ``close()`` runs on a short-lived thread of its
    own instead, so only that thread waits.
    """
    raw = getattr(events, "_raw_stream", None)
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
            return
        except OSError:
            pass
    threading.Thread(target=_close_quietly, args=(events,), name="bedrock-close", daemon=True).start()


def translate(name: str, exc: BaseException, *, started: bool = False) -> errors.UpstreamError:
    """A botocore (or transport) exception as a member of our error tree."""
    from botocore import exceptions as boto

    if isinstance(exc, errors.UpstreamError):
        return exc
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error") or {}
        raw_code = str(error.get("Code") or "")
        code = raw_code[:1].upper() + raw_code[1:]  # stream exceptions are spelt throttlingException
        status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        message = f"{name}: {code or 'error'}"
        if error.get("Message"):
            message += f": {error['Message']}"
        details = {"vendorError": code or None}
        if code in _RATE_LIMITED:
            return errors.UpstreamRateLimited(message, status=429, **details)
        if code in _UNAVAILABLE:
            return errors.UpstreamUnavailable(message, status=503 if code.startswith("Service") else 429, **details)
        if code in _SERVER:
            return errors.UpstreamHTTPError(message, status=500, **details)
        if code in _TIMEOUT:
            return errors.UpstreamTimeout(message, status=408, **details)
        if code in _AUTH:
            return errors.UpstreamAuthError(message, status=403, **details)
        if not isinstance(status, int) or status == 200:
            status = 424 if code == "ModelErrorException" else 400
        return errors.UpstreamHTTPError(message, status=status, **details)
    if isinstance(exc, (boto.NoCredentialsError, boto.PartialCredentialsError, boto.CredentialRetrievalError)):
        return errors.UpstreamAuthError(f"{name}: no usable AWS credentials ({type(exc).__name__})")
    if isinstance(exc, (boto.ConnectTimeoutError, boto.ReadTimeoutError)):
        return errors.UpstreamTimeout(f"{name}: {type(exc).__name__}")
    if isinstance(exc, boto.ParamValidationError):
        return errors.UpstreamHTTPError(f"{name}: invalid request: {exc}", status=400)
    if isinstance(exc, (boto.BotoCoreError, OSError)) or _is_transport_error(exc):
        cls = errors.UpstreamDisconnected if started else errors.UpstreamUnavailable
        return cls(f"{name}: {type(exc).__name__}")
    return errors.UpstreamProtocolError(f"{name}: {type(exc).__name__}: {exc}")


def _is_transport_error(exc: BaseException) -> bool:
    """urllib3 errors that botocore lets through while an event stream is read."""
    module = type(exc).__module__ or ""
    return module.startswith(("urllib3", "http.client"))
