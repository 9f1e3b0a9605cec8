"""The Bedrock fake proven by a real boto3 bedrock-runtime client, and the adapter end to end."""

from __future__ import annotations

import json
import uuid

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from chatrelay_dev.mockllm import answer_text, answer_tokens
from chatrelay_dev.mockllm.bedrock_fake import create_bedrock_fake
from chatrelay_dev.mockllm.common import REASONING_TOKENS, MockConfig, literal_tokens
from tests.conftest import login
from tests.support.providers import fake_requests, get_turn, write_providers_file
from tests.support.servers import ServerThread, wait_until
from tests.support.sse_client import iter_events, stream_chat
from tests.support.tricky import TRICKY_ANSWER, answer_directive, stream_tricky_answer

MODEL_ID = "anthropic.claude-3-5-haiku-20241022-v1:0"
ACCESS_KEY = "AKIDCHATRELAYFAKE"


@pytest.fixture(scope="module")
def bedrock_fake():
    server = ServerThread(create_bedrock_fake(MockConfig(ttft=0.01, interval=0.005, tokens=12))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def runtime(bedrock_fake):
    """A real boto3 client pointed at the fake, with dummy credentials."""
    return boto3.session.Session().client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=bedrock_fake.url,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key="fake-secret",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def bedrock_app(start_app, bedrock_fake, tmp_path_factory):
    path = write_providers_file(tmp_path_factory.mktemp("bedrock"), {
        "nova": {"kind": "bedrock", "base_url": bedrock_fake.url, "model": MODEL_ID, "region": "us-east-1"},
    })
    return start_app(providers_file=path)


@pytest.fixture
def bedrock_token(bedrock_app, user):
    return login(bedrock_app.url, user)


def _converse(runtime, text: str, **extra):
    return runtime.converse_stream(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": text}]}],
                                   **extra)


# --- the fake, as boto3 sees it ----------------------------------------------------------------

def test_boto3_decodes_the_fakes_event_stream(runtime, bedrock_fake):
    marker = uuid.uuid4().hex
    response = _converse(runtime, f"{marker} [mock tokens=6]", system=[{"text": "Be brief."}],
                         inferenceConfig={"maxTokens": 100})
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/vnd.amazon.eventstream"
    events = list(response["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds == ["messageStart", *["contentBlockDelta"] * 6, "contentBlockStop", "messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == answer_text(6)
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    usage = events[-1]["metadata"]["usage"]
    assert usage["outputTokens"] == 6 and usage["totalTokens"] == usage["inputTokens"] + 6
    [seen] = fake_requests(bedrock_fake.url, marker)
    assert seen["modelId"] == MODEL_ID and seen["accessKeyId"] == ACCESS_KEY  # SigV4-signed, model id decoded
    assert seen["body"]["system"] == [{"text": "Be brief."}]


def test_boto3_decodes_a_literal_answer_with_unicode_line_breaks_byte_for_byte(runtime):
    events = list(_converse(runtime, answer_directive())["stream"])
    pieces = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    assert pieces == literal_tokens(TRICKY_ANSWER) and "".join(pieces) == TRICKY_ANSWER
    assert events[-1]["metadata"]["usage"]["outputTokens"] == len(pieces)


def test_boto3_decodes_reasoning_deltas(runtime):
    events = list(_converse(runtime, "[mock reasoning=3 tokens=2]")["stream"])
    reasoning = [e["contentBlockDelta"]["delta"]["reasoningContent"] for e in events
                 if "reasoningContent" in e.get("contentBlockDelta", {}).get("delta", {})]
    assert "".join(r.get("text", "") for r in reasoning) == "".join(REASONING_TOKENS[:3])
    assert reasoning[-1]["signature"] == "mock-signature"


@pytest.mark.parametrize(("fault", "code", "status"), [
    ("http_429", "ThrottlingException", 429),
    ("http_503", "ServiceUnavailableException", 503),
    ("model_not_ready", "ModelNotReadyException", 429),
    ("http_403", "AccessDeniedException", 403),
    ("http_400", "ValidationException", 400),
])
def test_boto3_raises_the_modeled_exception_for_http_errors(runtime, fault, code, status):
    with pytest.raises(ClientError) as caught:
        _converse(runtime, f"[mock fault={fault}]")
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert type(caught.value).__name__ == code  # boto3's modeled exception class, e.g. ThrottlingException


def test_boto3_raises_exception_frames_in_the_stream(runtime):
    stream = _converse(runtime, "[mock tokens=5 fault=error_event fault_after=2 exception=throttlingException]")
    received = []
    with pytest.raises(EventStreamError) as caught:
        for event in stream["stream"]:
            received.append(event)
    assert caught.value.response["Error"]["Code"] == "throttlingException"
    assert len([e for e in received if "contentBlockDelta" in e]) == 2


def test_the_fake_validates_like_bedrock(runtime, bedrock_fake):
    with pytest.raises(ClientError, match="alternate"):
        runtime.converse_stream(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "a"}]},
                                                           {"role": "user", "content": [{"text": "b"}]}])
    unsigned = httpx.post(f"{bedrock_fake.url}/model/{MODEL_ID}/converse-stream", json={"messages": []})
    assert unsigned.status_code == 403


# --- the adapter through /v1/chat/stream ---------------------------------------------------------

def test_answer_streams_through_the_relay_and_is_stored_with_usage(bedrock_app, bedrock_token, bedrock_fake):
    marker = uuid.uuid4().hex
    result = stream_chat(bedrock_app.url, bedrock_token, {"prompt": f"{marker} [mock tokens=9]", "model": "nova"})
    assert result.status == 200
    assert result.deltas == answer_tokens(9)
    assert result.done["finishReason"] == "stop"
    usage = result.done["usage"]
    assert usage["completionTokens"] == 9 and usage["totalTokens"] == usage["promptTokens"] + 9
    turn = get_turn(bedrock_app.url, bedrock_token, result.meta["messageId"])
    assert turn["status"] == "complete" and turn["answer"] == answer_text(9)
    assert turn["usage"] == usage and turn["provider"] == "nova"
    [seen] = fake_requests(bedrock_fake.url, marker)
    assert seen["modelId"] == MODEL_ID
    assert seen["body"]["system"] == [{"text": "You are a helpful assistant."}]
    assert [m["role"] for m in seen["body"]["messages"]] == ["user"]


def test_multi_turn_history_is_sent_as_alternating_content_blocks(bedrock_app, bedrock_token, bedrock_fake):
    first = stream_chat(bedrock_app.url, bedrock_token, {"prompt": "first [mock tokens=3]", "model": "nova"})
    marker = uuid.uuid4().hex
    stream_chat(bedrock_app.url, bedrock_token, {"prompt": marker, "model": "nova",
                                                  "conversationId": first.meta["conversationId"]})
    [seen] = fake_requests(bedrock_fake.url, marker)
    assert seen["body"]["messages"] == [
        {"role": "user", "content": [{"text": "first [mock tokens=3]"}]},
        {"role": "assistant", "content": [{"text": answer_text(3)}]},
        {"role": "user", "content": [{"text": marker}]},
    ]


def test_reasoning_content_is_relayed_as_reasoning(bedrock_app, bedrock_token):
    result = stream_chat(bedrock_app.url, bedrock_token, {"prompt": "[mock reasoning=4 tokens=2]", "model": "nova"})
    assert "".join(json.loads(e.data)["delta"] for e in result.named("reasoning")) == "".join(REASONING_TOKENS[:4])
    turn = get_turn(bedrock_app.url, bedrock_token, result.meta["messageId"])
    assert turn["reasoning"] == "".join(REASONING_TOKENS[:4]) and turn["answer"] == answer_text(2)


@pytest.mark.parametrize(("fault", "code"), [
    ("http_429", "upstream_rate_limited"),
    ("http_503", "upstream_unavailable"),
    ("model_not_ready", "upstream_unavailable"),
    ("http_403", "upstream_auth_failed"),
    ("http_400", "upstream_error"),
    ("error_event fault_after=0", "upstream_error"),
    ("error_event fault_after=2 exception=throttlingException", "upstream_rate_limited"),
])
def test_vendor_errors_become_error_events_with_stable_codes(bedrock_app, bedrock_token, fault, code):
    result = stream_chat(bedrock_app.url, bedrock_token, {"prompt": f"[mock fault={fault}]", "model": "nova"})
    assert result.error["code"] == code
    turn = get_turn(bedrock_app.url, bedrock_token, result.meta["messageId"])
    assert turn["status"] == "failed" and turn["errorCode"] == code and turn["answer"] == result.text


def test_a_cut_connection_leaves_a_failed_turn_with_the_partial_answer(bedrock_app, bedrock_token):
    result = stream_chat(bedrock_app.url, bedrock_token, {"prompt": "[mock tokens=10 fault=cut fault_after=4]",
                                                           "model": "nova"})
    assert result.text == answer_text(4)
    assert result.error["code"] == "upstream_disconnected"
    turn = get_turn(bedrock_app.url, bedrock_token, result.meta["messageId"])
    assert turn["status"] == "failed" and turn["answer"] == answer_text(4)


def test_a_client_leaving_a_stalled_answer_closes_the_bedrock_stream(bedrock_app, bedrock_token, bedrock_fake):
    """The worker thread is blocked reading when the client goes: the socket is shut, the fake sees it."""
    marker = uuid.uuid4().hex
    body = {"prompt": f"{marker} [mock tokens=10 fault=stall fault_after=3]", "model": "nova"}
    seen, meta = 0, None
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{bedrock_app.url}/v1/chat/stream", json=body,
                           headers={"Authorization": f"Bearer {bedrock_token}"}) as response:
            for event in iter_events(response):
                if event.event == "meta":
                    meta = json.loads(event.data)
                if event.event == "message":
                    seen += 1
                    if seen == 3:
                        break
    wait_until(lambda: fake_requests(bedrock_fake.url, marker)[0]["outcome"] == "cancelled", timeout=5)
    assert meta is not None
    turn = wait_until(lambda: _ended(get_turn(bedrock_app.url, bedrock_token, meta["messageId"])))
    assert turn["status"] == "stopped" and turn["answer"] == answer_text(3)


def _ended(turn: dict) -> dict | None:
    return turn if turn["status"] != "streaming" else None


def test_an_answer_with_unicode_line_breaks_streams_and_is_stored_byte_for_byte(bedrock_app, bedrock_token):
    result, turn = stream_tricky_answer(bedrock_app.url, bedrock_token, "nova")
    assert result.error is None and result.done["finishReason"] == "stop"
    assert result.deltas == literal_tokens(TRICKY_ANSWER) and result.text == TRICKY_ANSWER
    assert turn["status"] == "complete" and turn["answer"] == TRICKY_ANSWER and turn["provider"] == "nova"
