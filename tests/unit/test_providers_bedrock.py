"""The Bedrock ConverseStream adapter: request shape, error mapping, the thread hand-off; the frame encoder."""

from __future__ import annotations

import json
import threading
import time

import anyio
import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    EventStreamError,
    NoCredentialsError,
    ReadTimeoutError,
)

from chatrelay import errors
from chatrelay.providers.base import ChatMessage, StreamParams, Usage
from chatrelay.providers.bedrock_converse import BedrockConverseProvider, translate
from chatrelay_dev.mockllm import eventstream
from tests.support.tricky import TRICKY_ANSWER

MESSAGES = [ChatMessage("system", "sys"), ChatMessage("user", "q1"), ChatMessage("assistant", "a1"),
            ChatMessage("user", "q2")]


class ScriptedEvents:
    """Stands in for botocore's EventStream: iterable, closable, may block or fail."""

    def __init__(self, *items: object) -> None:
        self.items = items
        self.closed = threading.Event()

    def __iter__(self):
        for item in self.items:
            if self.closed.is_set():
                return
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, float):
                self.closed.wait(item)  # a blocking read that close() interrupts
                continue
            yield item

    def close(self) -> None:
        self.closed.set()


class ScriptedClient:
    """A bedrock-runtime client with one method, answering from a script (a real implementation)."""

    def __init__(self, answer: ScriptedEvents | BaseException) -> None:
        self.answer = answer
        self.requests: list[dict] = []
        self.threads: list[str] = []

    def converse_stream(self, **request):
        self.requests.append(request)
        self.threads.append(threading.current_thread().name)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return {"stream": self.answer}


PARAMS = StreamParams(model="anthropic.claude-3-haiku", max_tokens=64, temperature=0.2)


def _collect(client, params=PARAMS):
    provider = BedrockConverseProvider("bedrock", client=client)

    async def run():
        return [d async for d in provider.stream(MESSAGES, params)]

    return anyio.run(run)


def _client_error(code: str, status: int, message: str = "m") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "ConverseStream")


def test_streams_text_and_reasoning_with_usage_from_metadata_off_the_event_loop():
    events = ScriptedEvents(
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"reasoningContent": {"text": "think"}}, "contentBlockIndex": 0}},
        {"contentBlockDelta": {"delta": {"text": "Hel"}, "contentBlockIndex": 1}},
        {"contentBlockDelta": {"delta": {"text": "lo"}, "contentBlockIndex": 1}},
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"messageStop": {"stopReason": "max_tokens"}},
        {"metadata": {"usage": {"inputTokens": 9, "outputTokens": 2, "totalTokens": 11}, "metrics": {"latencyMs": 5}}},
    )
    client = ScriptedClient(events)
    deltas = _collect(client)
    assert [d.reasoning for d in deltas if d.reasoning] == ["think"]
    assert "".join(d.text for d in deltas) == "Hello"
    assert deltas[-1].finish_reason == "length" and deltas[-1].usage == Usage(9, 2, 11)
    assert client.threads[0].startswith("bedrock-")
    request = client.requests[0]
    assert request["modelId"] == "anthropic.claude-3-haiku"
    assert request["system"] == [{"text": "sys"}]
    assert request["messages"] == [{"role": "user", "content": [{"text": "q1"}]},
                                   {"role": "assistant", "content": [{"text": "a1"}]},
                                   {"role": "user", "content": [{"text": "q2"}]}]
    assert request["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.2}
    assert events.closed.is_set()


def test_a_stream_that_ends_without_message_stop_is_a_disconnect():
    events = ScriptedEvents({"contentBlockDelta": {"delta": {"text": "a"}, "contentBlockIndex": 0}})
    with pytest.raises(errors.UpstreamDisconnected):
        _collect(ScriptedClient(events))


def test_closing_the_iterator_closes_the_event_stream_of_a_blocked_worker():
    events = ScriptedEvents({"contentBlockDelta": {"delta": {"text": "a"}, "contentBlockIndex": 0}}, 30.0,
                            {"contentBlockDelta": {"delta": {"text": "b"}, "contentBlockIndex": 0}})
    provider = BedrockConverseProvider("bedrock", client=ScriptedClient(events))

    async def run():
        stream = provider.stream(MESSAGES, StreamParams(model="m"))
        assert (await stream.__anext__()).text == "a"
        started = time.monotonic()
        await stream.aclose()
        return time.monotonic() - started

    assert anyio.run(run) < 1.0  # closing never waits for the blocked read
    assert events.closed.wait(5)


@pytest.mark.parametrize(("exc", "cls", "retryable"), [
    (_client_error("ThrottlingException", 429), errors.UpstreamRateLimited, True),
    (_client_error("ServiceUnavailableException", 503), errors.UpstreamUnavailable, True),
    (_client_error("ModelNotReadyException", 429), errors.UpstreamUnavailable, True),
    (_client_error("InternalServerException", 500), errors.UpstreamHTTPError, True),
    (_client_error("ModelTimeoutException", 408), errors.UpstreamTimeout, True),
    (_client_error("AccessDeniedException", 403), errors.UpstreamAuthError, False),
    (_client_error("UnrecognizedClientException", 403), errors.UpstreamAuthError, False),
    (_client_error("ValidationException", 400), errors.UpstreamHTTPError, False),
    (_client_error("ResourceNotFoundException", 404), errors.UpstreamHTTPError, False),
    (_client_error("ModelErrorException", 424), errors.UpstreamHTTPError, False),
    (NoCredentialsError(), errors.UpstreamAuthError, False),
    (EndpointConnectionError(endpoint_url="https://bedrock"), errors.UpstreamUnavailable, True),
    (ReadTimeoutError(endpoint_url="https://bedrock"), errors.UpstreamTimeout, True),
])
def test_botocore_errors_before_the_stream_map_to_the_error_tree(exc, cls, retryable):
    with pytest.raises(cls) as caught:
        _collect(ScriptedClient(exc))
    assert type(caught.value) is cls and caught.value.retryable is retryable


@pytest.mark.parametrize(("code", "cls"), [
    ("throttlingException", errors.UpstreamRateLimited),
    ("serviceUnavailableException", errors.UpstreamUnavailable),
    ("modelStreamErrorException", errors.UpstreamHTTPError),
    ("validationException", errors.UpstreamHTTPError),
    ("internalServerException", errors.UpstreamHTTPError),
])
def test_exception_events_in_the_stream_map_the_same_way(code, cls):
    failure = EventStreamError({"Error": {"Code": code, "Message": "in stream"}}, "ConverseStream")
    events = ScriptedEvents({"contentBlockDelta": {"delta": {"text": "a"}, "contentBlockIndex": 0}}, failure)
    with pytest.raises(cls, match="in stream"):
        _collect(ScriptedClient(events))


def test_a_connection_error_once_streaming_is_a_disconnect():
    assert isinstance(translate("b", EndpointConnectionError(endpoint_url="x"), started=True),
                      errors.UpstreamDisconnected)


def test_encoded_frames_decode_with_botocore_and_crcs_are_checked():
    frames = eventstream.event("contentBlockDelta", {"delta": {"text": "你好"}, "contentBlockIndex": 0})
    frames += eventstream.exception("throttlingException", "slow down")
    buffer = EventStreamBuffer()
    buffer.add_data(frames)
    first, second = list(buffer)
    assert first.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                             ":message-type": "event"}
    assert first.payload.decode() == '{"delta":{"text":"你好"},"contentBlockIndex":0}'
    assert second.headers[":exception-type"] == "throttlingException"
    assert second.to_response_dict()["status_code"] == 400

    buffer = EventStreamBuffer()
    buffer.add_data(eventstream.event("contentBlockDelta", {"delta": {"text": TRICKY_ANSWER}, "contentBlockIndex": 0}))
    [tricky] = list(buffer)
    assert json.loads(tricky.payload)["delta"]["text"] == TRICKY_ANSWER

    corrupt = bytearray(eventstream.event("messageStop", {"stopReason": "end_turn"}))
    corrupt[-6] ^= 0xFF  # a payload byte: the message CRC no longer matches
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(corrupt))
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        list(buffer)
