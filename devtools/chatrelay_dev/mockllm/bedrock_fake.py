"""A local fake of Amazon Bedrock Runtime ``ConverseStream``, faithful on the wire.

``POST /model/{modelId}/converse-stream`` (rest-json) answers
``application/vnd.amazon.eventstream``: binary frames (see ``eventstream.py``) with
``messageStart``, ``contentBlockDelta`` (``{"delta":{"text"}}``, or
``{"delta":{"reasoningContent":{"text"}}}`` for reasoning), ``contentBlockStop``,
``messageStop`` (stopReason) and ``metadata`` (usage, metrics), exactly the
members of botocore's ``ConverseStreamOutput`` shape. Errors before the stream are
HTTP errors with ``x-amzn-ErrorType`` and a JSON ``{"message"}`` body; errors in the
stream are ``exception`` frames (``:exception-type`` ``throttlingException`` ...).
The request must be SigV4-signed (an ``AWS4-HMAC-SHA256`` Authorization header;
with ``api_key`` set, its access key id must match) and its messages must start
with a user turn and alternate, as Bedrock validates them.
``tests/functional/test_providers_bedrock.py`` proves it with a real boto3
``bedrock-runtime`` client (``endpoint_url`` pointed here, dummy credentials).

Knobs (every fake's, see ``common.py``): ``reasoning`` as ``reasoningContent`` deltas,
``fault`` = ``http_429`` (ThrottlingException) | ``http_500``
(InternalServerException) | ``http_503`` (ServiceUnavailableException) |
``model_not_ready`` | ``http_403`` (AccessDeniedException) | ``http_400``
(ValidationException) | ``cut`` | ``stall`` | ``error_event`` (an exception frame of
type ``exception``, default ``modelStreamErrorException``, after ``fault_after``
chunks).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from chatrelay_dev.mockllm import eventstream
from chatrelay_dev.mockllm.common import Fake, MockConfig, content_text, http_fault, outcome, prompt_tokens, reasoning

FAULTS = {"none", "http_429", "http_500", "http_503", "model_not_ready", "http_403", "http_400", "cut", "stall",
          "error_event"}
_HTTP_FAULTS = {
    "http_429": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "http_500": (500, "InternalServerException", "The server encountered an internal error."),
    "http_503": (503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
    "model_not_ready": (429, "ModelNotReadyException", "Model is not ready to serve inference requests."),
    "http_403": (403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
    "http_400": (400, "ValidationException", "The provided request is not valid"),
}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
EVENT_STREAM = "application/vnd.amazon.eventstream"


@dataclass(frozen=True)
class BedrockFakeConfig(MockConfig):
    exception: str = "modelStreamErrorException"
    """The ``:exception-type`` an ``error_event`` fault sends."""


def _error(status: int, error_type: str, message: str) -> Response:
    return Response(
        json.dumps({"message": message}),
        status_code=status,
        media_type="application/json",
        headers={"x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                 "x-amzn-RequestId": str(uuid.uuid4())},
    )


class BedrockFake(Fake):
    config_class = BedrockFakeConfig

    def routes(self) -> list[Route]:
        return [Route("/model/{model_id:path}/converse-stream", self.converse_stream, methods=["POST"])]

    async def converse_stream(self, request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("AWS4-HMAC-SHA256 "):
            return _error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        key_id = (_CREDENTIAL.search(authorization) or [None, None])[1]
        if self.config.api_key and key_id != self.config.api_key:
            return _error(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        try:
            body = await request.json()
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "ValidationException", "messages is required")
        problem = _check_messages(messages)
        if problem:
            return _error(400, "ValidationException", problem)
        model_id = request.path_params["model_id"]
        config = self.knobs(messages)
        record = self.log(config, id=str(uuid.uuid4()), modelId=model_id, body=body, accessKeyId=key_id)
        fault = http_fault(config, record, _HTTP_FAULTS)
        if fault:
            return _error(*fault)
        system = " ".join(content_text(block.get("text")) for block in body.get("system") or [])
        usage_in = prompt_tokens(system, *(content_text(m.get("content")) for m in messages))
        return StreamingResponse(
            self._stream(config, usage_in, record),
            media_type=EVENT_STREAM,
            headers={"x-amzn-RequestId": record["id"]},
        )

    async def _stream(self, config: MockConfig, usage_in: int, record: dict) -> AsyncIterator[bytes]:
        failed = eventstream.exception(getattr(config, "exception", "modelStreamErrorException"),
                                       "The model stream failed. Retry your request.")
        with outcome(record):
            await asyncio.sleep(config.ttft)
            yield eventstream.event("messageStart", {"role": "assistant"})
            if config.fault == "error_event" and config.fault_after == 0:
                record["outcome"] = config.fault
                yield failed
                return
            index = 0
            if config.reasoning:
                async for piece in reasoning(config):
                    yield eventstream.event("contentBlockDelta", {
                        "delta": {"reasoningContent": {"text": piece}}, "contentBlockIndex": 0})
                yield eventstream.event("contentBlockDelta", {
                    "delta": {"reasoningContent": {"signature": "mock-signature"}}, "contentBlockIndex": 0})
                yield eventstream.event("contentBlockStop", {"contentBlockIndex": 0})
                index = 1

            def text_delta(_: int, piece: str) -> bytes:
                return eventstream.event("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": index})

            tail = [eventstream.event("contentBlockStop", {"contentBlockIndex": index}),
                    eventstream.event("messageStop", {"stopReason": "end_turn"}),
                    eventstream.event("metadata", {
                        "usage": {"inputTokens": usage_in, "outputTokens": config.tokens,
                                  "totalTokens": usage_in + config.tokens},
                        "metrics": {"latencyMs": int(config.ttft * 1000)}})]
            async for data in self.content(config, record, text_delta, {"error_event": failed}, tail):
                yield data


def _check_messages(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "A conversation must start with a user message."
    previous = None
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f"Invalid role {role!r}: messages take the roles user and assistant; use system for the prompt."
        if previous is None and role != "user":
            return ("A conversation must start with a user message. "
                    "Try again with a conversation that starts with a user message.")
        if role == previous:
            return "A conversation must alternate between user and assistant roles."
        if not isinstance(message.get("content"), list):
            return "The content of a message must be a list of content blocks."
        previous = role
    return None


def create_bedrock_fake(config: MockConfig | None = None) -> Starlette:
    return BedrockFake(config).app()
