"""The Anthropic fake proven by the official SDK, and the Anthropic adapter end to end through /v1/chat/stream."""

from __future__ import annotations

import uuid

import anthropic
import httpx
import pytest

from chatrelay_dev.mockllm import answer_text, answer_tokens
from chatrelay_dev.mockllm.anthropic_fake import create_anthropic_fake
from chatrelay_dev.mockllm.common import REASONING_TOKENS, MockConfig, literal_tokens
from tests.conftest import login
from tests.support.providers import fake_requests, get_turn, write_providers_file
from tests.support.servers import ServerThread, wait_until
from tests.support.sse_client import iter_events, stream_chat
from tests.support.tricky import TRICKY_ANSWER, answer_directive, stream_tricky_answer

KEY = "sk-ant-fake-key"


@pytest.fixture(scope="module")
def anthropic_fake():
    server = ServerThread(create_anthropic_fake(MockConfig(ttft=0.01, interval=0.005, tokens=12, api_key=KEY))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sdk(anthropic_fake):
    with anthropic.Anthropic(base_url=anthropic_fake.url, api_key=KEY, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def claude_app(start_app, anthropic_fake, tmp_path_factory):
    path = write_providers_file(tmp_path_factory.mktemp("anthropic"), {
        "claude": {"kind": "anthropic", "base_url": anthropic_fake.url, "model": "claude-mock-1", "api_key": KEY},
    })
    return start_app(providers_file=path)


@pytest.fixture
def claude_token(claude_app, user):
    return login(claude_app.url, user)


# --- the fake, as the official SDK sees it ----------------------------------------------------

def test_sdk_streams_text_and_gets_the_final_message(sdk):
    with sdk.messages.stream(model="claude-mock-1", max_tokens=256, system="Be brief.",
                             messages=[{"role": "user", "content": "hello [mock tokens=9]"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == answer_text(9)
    assert final.stop_reason == "end_turn" and final.role == "assistant" and final.model == "claude-mock-1"
    assert final.usage.output_tokens == 9 and final.usage.input_tokens > 0
    assert final.content[0].type == "text" and final.content[0].text == answer_text(9)


def test_sdk_reads_a_literal_answer_with_unicode_line_breaks_byte_for_byte(sdk):
    with sdk.messages.stream(model="claude-mock-1", max_tokens=256,
                             messages=[{"role": "user", "content": answer_directive()}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == literal_tokens(TRICKY_ANSWER)
    assert final.content[0].text == TRICKY_ANSWER and final.usage.output_tokens == len(pieces)


def test_sdk_raw_events_are_in_anthropic_order(sdk):
    events = list(sdk.messages.create(model="claude-mock-1", max_tokens=64, stream=True,
                                      messages=[{"role": "user", "content": "raw [mock tokens=3]"}]))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_delta") == 3 and "ping" not in kinds  # the SDK skips pings
    assert events[-2].usage.output_tokens == 3 and events[-2].delta.stop_reason == "end_turn"


def test_sdk_reads_thinking_blocks(sdk):
    with sdk.messages.stream(model="claude-mock-1", max_tokens=256,
                             messages=[{"role": "user", "content": "think [mock reasoning=4 tokens=2]"}]) as stream:
        final = stream.get_final_message()
    thinking, text = final.content
    assert thinking.type == "thinking" and thinking.thinking == "".join(REASONING_TOKENS[:4])
    assert thinking.signature == "mock-signature"
    assert text.text == answer_text(2)


def test_sdk_without_streaming(sdk):
    message = sdk.messages.create(model="claude-mock-1", max_tokens=64,
                                  messages=[{"role": "user", "content": "plain [mock tokens=4]"}])
    assert message.content[0].text == answer_text(4) and message.usage.output_tokens == 4


@pytest.mark.parametrize(("fault", "exception"), [
    ("http_429", anthropic.RateLimitError),
    ("http_529", anthropic.OverloadedError),
    ("http_500", anthropic.InternalServerError),
])
def test_sdk_raises_its_own_errors_for_the_fakes_http_errors(sdk, fault, exception):
    with pytest.raises(exception) as caught:
        sdk.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": f"[mock fault={fault}]"}])
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


def test_sdk_raises_for_a_wrong_key_a_missing_version_and_an_error_event(anthropic_fake, sdk):
    with anthropic.Anthropic(base_url=anthropic_fake.url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError):
            bad.messages.create(model="m", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="system"):
        sdk.messages.create(model="m", max_tokens=8, messages=[{"role": "system", "content": "no"},
                                                               {"role": "user", "content": "x"}])
    response = httpx.post(f"{anthropic_fake.url}/v1/messages", headers={"x-api-key": KEY},
                          json={"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 400 and "anthropic-version" in response.json()["error"]["message"]
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        with sdk.messages.stream(model="m", max_tokens=8, messages=[
                {"role": "user", "content": "[mock fault=error_event fault_after=2]"}]) as stream:
            for _ in stream.text_stream:
                pass


# --- the adapter through /v1/chat/stream ------------------------------------------------------

def test_answer_streams_through_the_relay_and_is_stored_with_usage(claude_app, claude_token, anthropic_fake):
    marker = uuid.uuid4().hex
    result = stream_chat(claude_app.url, claude_token, {"prompt": f"{marker} [mock tokens=10]", "model": "claude"})
    assert result.status == 200 and result.meta["model"] == "claude"
    assert result.deltas == answer_tokens(10)
    assert result.done["finishReason"] == "stop"
    usage = result.done["usage"]
    assert usage["completionTokens"] == 10 and usage["promptTokens"] > 0
    assert usage["totalTokens"] == usage["promptTokens"] + 10
    turn = get_turn(claude_app.url, claude_token, result.meta["messageId"])
    assert turn["status"] == "complete" and turn["answer"] == answer_text(10)
    assert turn["usage"] == usage and turn["provider"] == "claude"
    [sent] = fake_requests(anthropic_fake.url, marker)
    assert sent["body"]["system"] == "You are a helpful assistant."
    assert [m["role"] for m in sent["body"]["messages"]] == ["user"]
    assert sent["body"]["model"] == "claude-mock-1" and sent["body"]["stream"] is True
    assert sent["headers"]["anthropic-version"] == "2023-06-01"


def test_thinking_is_relayed_as_reasoning_and_stored_apart(claude_app, claude_token):
    result = stream_chat(claude_app.url, claude_token, {"prompt": "why [mock reasoning=5 tokens=3]",
                                                         "model": "claude"})
    reasoning = [e for e in result.events if e.event == "reasoning"]
    assert len(reasoning) == 5
    assert result.text == answer_text(3)
    turn = get_turn(claude_app.url, claude_token, result.meta["messageId"])
    assert turn["reasoning"] == "".join(REASONING_TOKENS[:5]) and turn["answer"] == answer_text(3)


@pytest.mark.parametrize(("fault", "code"), [
    ("http_429", "upstream_rate_limited"),
    ("http_529", "upstream_error"),
    ("http_401", "upstream_auth_failed"),
    ("error_event fault_after=0", "upstream_error"),
    ("malformed fault_after=2", "upstream_bad_response"),
])
def test_vendor_errors_become_error_events_with_stable_codes(claude_app, claude_token, fault, code):
    result = stream_chat(claude_app.url, claude_token, {"prompt": f"[mock fault={fault}]", "model": "claude"})
    assert result.status == 200
    assert result.error["code"] == code
    assert result.done["finishReason"] == "error"
    turn = get_turn(claude_app.url, claude_token, result.meta["messageId"])
    assert turn["status"] == "failed" and turn["errorCode"] == code


def test_a_cut_connection_leaves_a_failed_turn_with_the_partial_answer(claude_app, claude_token):
    result = stream_chat(claude_app.url, claude_token, {"prompt": "[mock tokens=10 fault=cut fault_after=4]",
                                                         "model": "claude"})
    assert result.text == answer_text(4)
    assert result.error["code"] == "upstream_disconnected"
    turn = get_turn(claude_app.url, claude_token, result.meta["messageId"])
    assert turn["status"] == "failed" and turn["answer"] == answer_text(4)
    assert turn["errorCode"] == "upstream_disconnected"


def test_a_client_leaving_closes_the_anthropic_request(claude_app, claude_token, anthropic_fake):
    marker = uuid.uuid4().hex
    body = {"prompt": f"{marker} [mock tokens=10 fault=stall fault_after=3]", "model": "claude"}
    seen = 0
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{claude_app.url}/v1/chat/stream", json=body,
                           headers={"Authorization": f"Bearer {claude_token}"}) as response:
            for event in iter_events(response):
                if event.event == "message":
                    seen += 1
                    if seen == 3:
                        break
    wait_until(lambda: fake_requests(anthropic_fake.url, marker)[0]["outcome"] == "cancelled")


def test_an_answer_with_unicode_line_breaks_streams_and_is_stored_byte_for_byte(claude_app, claude_token):
    result, turn = stream_tricky_answer(claude_app.url, claude_token, "claude")
    assert result.error is None and result.done["finishReason"] == "stop"
    assert result.deltas == literal_tokens(TRICKY_ANSWER) and result.text == TRICKY_ANSWER
    assert turn["status"] == "complete" and turn["answer"] == TRICKY_ANSWER and turn["provider"] == "claude"
