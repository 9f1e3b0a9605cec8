"""OpenAI-compatible presets end to end: a DeepSeek-style stream (``: keep-alive`` comments while
queued, ``reasoning_content`` deltas) through /v1/chat/stream, answer and reasoning stored apart."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from chatrelay_dev.mockllm import answer_text, answer_tokens
from chatrelay_dev.mockllm.common import REASONING_TOKENS, literal_tokens
from tests.conftest import login
from tests.support.providers import fake_requests, get_turn, write_providers_file
from tests.support.sse_client import stream_chat
from tests.support.tricky import TRICKY_ANSWER, stream_tricky_answer


@pytest.fixture(scope="module")
def app(start_app, mock_llm, tmp_path_factory):
    path = write_providers_file(tmp_path_factory.mktemp("deepseek"), {
        # The built-in deepseek preset, pointed at the local fake.
        "deepseek": {"base_url": f"{mock_llm.url}/v1", "model": "deepseek-reasoner", "api_key": "sk-deepseek"},
        "zhipu": {"base_url": f"{mock_llm.url}/v1", "api_key": "sk-zhipu"},
    })
    return start_app(providers_file=path)


@pytest.fixture
def token(app, user):
    return login(app.url, user)


def test_deepseek_keepalives_and_reasoning_stream_end_to_end(app, token, mock_llm):
    marker = uuid.uuid4().hex
    result = stream_chat(app.url, token, {"prompt": f"{marker} [mock keepalive=1 reasoning=6 tokens=7 ttft=0.3]",
                                          "model": "deepseek"})
    assert result.status == 200 and result.error is None
    # Reasoning arrives first, as its own events, never mixed into the answer.
    reasoning = [json.loads(e.data)["delta"] for e in result.events if e.event == "reasoning"]
    assert reasoning == REASONING_TOKENS[:6]
    names = [e.event for e in result.events]
    assert names.index("reasoning") < names.index("message")
    assert result.deltas == answer_tokens(7)
    assert result.done["usage"]["completionTokens"] == 7
    # Stored apart: the answer has no reasoning in it, the reasoning no answer.
    turn = get_turn(app.url, token, result.meta["messageId"])
    assert turn["status"] == "complete"
    assert turn["answer"] == answer_text(7)
    assert turn["reasoning"] == "".join(REASONING_TOKENS[:6])
    assert turn["provider"] == "deepseek" and turn["model"] == "deepseek"
    [seen] = fake_requests(mock_llm.url, marker)
    assert seen["body"]["model"] == "deepseek-reasoner"
    assert seen["body"]["stream_options"] == {"include_usage": True}
    assert seen["config"]["keepalive"] is True and seen["outcome"] == "complete"


def test_a_preset_that_rejects_stream_options_does_not_get_them(app, token, mock_llm):
    marker = uuid.uuid4().hex
    result = stream_chat(app.url, token, {"prompt": f"{marker} [mock tokens=3]", "model": "zhipu"})
    assert result.text == answer_text(3)
    [seen] = fake_requests(mock_llm.url, marker)
    assert "stream_options" not in seen["body"] and seen["body"]["model"] == "glm-4-flash"


def test_configured_and_environment_presets_are_listed(app, token):
    models = httpx.get(f"{app.url}/v1/models", headers={"Authorization": f"Bearer {token}"}).json()["models"]
    assert {"deepseek", "zhipu", "mock", "default"} <= set(models)


def test_consecutive_turns_reuse_one_upstream_connection(app, token, mock_llm):
    """The body is read to its end after [DONE], so httpx pools the connection: no new TCP (and,
    with a real vendor, TLS) handshake before the next turn's first token."""
    markers = [uuid.uuid4().hex for _ in range(3)]
    for marker in markers:
        result = stream_chat(app.url, token, {"prompt": f"{marker} [mock tokens=3]", "model": "zhipu"})
        assert result.done["finishReason"] == "stop"
    clients = [fake_requests(mock_llm.url, marker)[0]["client"] for marker in markers]
    assert clients[0] and len(set(clients)) == 1, clients


def test_an_answer_with_unicode_line_breaks_streams_and_is_stored_byte_for_byte(app, token):
    result, turn = stream_tricky_answer(app.url, token, "deepseek")
    assert result.error is None and result.done["finishReason"] == "stop"
    assert result.deltas == literal_tokens(TRICKY_ANSWER) and result.text == TRICKY_ANSWER
    assert turn["status"] == "complete" and turn["answer"] == TRICKY_ANSWER and turn["provider"] == "deepseek"
