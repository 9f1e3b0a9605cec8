"""Failover and per-provider timeouts end to end: real fakes on sockets, the relay, DynamoDB Local."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from chatrelay_dev.mockllm import MockConfig, answer_text, create_mock_app
from chatrelay_dev.mockllm.anthropic_fake import create_anthropic_fake
from tests.conftest import login
from tests.support.providers import fake_requests, get_turn, write_providers_file
from tests.support.servers import ServerThread, wait_until
from tests.support.sse_client import stream_chat

KEY = "sk-ant-failover"
FAST = dict(ttft=0.01, interval=0.005, tokens=12)


@pytest.fixture(scope="module")
def fakes():
    """A rate-limited OpenAI-compatible vendor, one that cuts its streams, a slow Anthropic and a healthy one."""
    servers = {
        "limited": ServerThread(create_mock_app(MockConfig(**FAST, fault="http_429"))).start(),
        "cutting": ServerThread(create_mock_app(MockConfig(**FAST, fault="cut", fault_after=3))).start(),
        "slow": ServerThread(create_anthropic_fake(MockConfig(**{**FAST, "ttft": 5.0}, api_key=KEY))).start(),
        "claude": ServerThread(create_anthropic_fake(MockConfig(**FAST, api_key=KEY))).start(),
    }
    yield {name: server.url for name, server in servers.items()}
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def app(start_app, fakes, tmp_path_factory):
    claude = {"kind": "anthropic", "base_url": fakes["claude"], "model": "claude-mock", "api_key": KEY}
    path = write_providers_file(tmp_path_factory.mktemp("failover"), {
        "primary": {"kind": "openai_compat", "base_url": f"{fakes['limited']}/v1", "model": "gpt-limited",
                    "fallback": ["claude"]},
        "claude": claude,
        "cutting": {"kind": "openai_compat", "base_url": f"{fakes['cutting']}/v1", "model": "gpt-cutting",
                    "fallback": ["claude"]},
        "slow": {"kind": "anthropic", "base_url": fakes["slow"], "model": "claude-slow", "api_key": KEY,
                 "timeouts": {"first_token": 0.5}, "fallback": ["mock"]},
        "idle-bounded": {"kind": "mock", "timeouts": {"idle": 0.3}},
        "first-token-bounded": {"kind": "mock", "timeouts": {"first_token": 0.3}},
    })
    return start_app(providers_file=path)


@pytest.fixture
def token(app, user):
    return login(app.url, user)


def test_primary_429_then_the_secondary_answers_and_the_turn_records_it(app, token, fakes):
    marker = uuid.uuid4().hex
    result = stream_chat(app.url, token, {"prompt": f"{marker} [mock tokens=6]", "model": "primary"})
    assert result.error is None
    assert result.text == answer_text(6) and result.done["finishReason"] == "stop"
    assert result.meta["model"] == "primary"
    turn = get_turn(app.url, token, result.meta["messageId"])
    assert turn["status"] == "complete" and turn["answer"] == answer_text(6)
    assert turn["model"] == "primary" and turn["provider"] == "claude"
    assert turn["usage"]["completionTokens"] == 6  # the secondary's usage
    assert [r["outcome"] for r in fake_requests(fakes["limited"], marker)] == ["http_429"]
    [answered] = fake_requests(fakes["claude"], marker)
    assert answered["body"]["model"] == "claude-mock"  # each member gets its own model id


def test_each_provider_is_tried_at_most_once(app, token, fakes):
    marker = uuid.uuid4().hex
    result = stream_chat(app.url, token, {"prompt": f"{marker} [mock fault=http_429]", "model": "primary"})
    assert result.error["code"] == "upstream_rate_limited"
    assert len(fake_requests(fakes["limited"], marker)) == 1
    assert len(fake_requests(fakes["claude"], marker)) == 1
    turn = get_turn(app.url, token, result.meta["messageId"])
    assert turn["status"] == "failed" and turn["errorCode"] == "upstream_rate_limited"


def test_after_the_first_token_a_failure_is_not_retried(app, token, fakes):
    marker = uuid.uuid4().hex
    result = stream_chat(app.url, token, {"prompt": f"{marker} [mock tokens=8]", "model": "cutting"})
    assert result.text == answer_text(3)
    assert result.error["code"] == "upstream_disconnected"
    turn = get_turn(app.url, token, result.meta["messageId"])
    assert turn["status"] == "failed" and turn["answer"] == answer_text(3)
    assert turn["provider"] == "cutting"
    assert fake_requests(fakes["claude"], marker) == []  # no silent switch mid-answer


def test_a_first_token_timeout_fails_over_and_abandons_the_slow_request(app, token, fakes, mock_llm):
    marker = uuid.uuid4().hex
    started = time.monotonic()
    result = stream_chat(app.url, token, {"prompt": f"{marker} [mock tokens=4]", "model": "slow"})
    elapsed = time.monotonic() - started
    assert result.text == answer_text(4) and result.error is None
    assert elapsed < 3.0  # the slow vendor's 5 s were not waited for
    turn = get_turn(app.url, token, result.meta["messageId"])
    assert turn["provider"] == "mock"
    assert turn["ttftMs"] >= 500  # the first-token limit elapsed before the fallback answered
    wait_until(lambda: fake_requests(fakes["slow"], marker)[0]["outcome"] == "cancelled")
    assert len(fake_requests(mock_llm.url, marker)) == 1


def test_a_per_provider_idle_timeout_fires_and_keeps_the_partial_answer(app, token):
    started = time.monotonic()
    result = stream_chat(app.url, token, {"prompt": "[mock tokens=8 fault=stall fault_after=2]",
                                          "model": "idle-bounded"})
    assert time.monotonic() - started < 5.0  # the service-wide idle timeout is 60 s
    assert result.error["code"] == "upstream_timeout"
    assert "next token within 0.3 s" in result.error["message"]
    assert result.text == answer_text(2)
    turn = get_turn(app.url, token, result.meta["messageId"])
    assert turn["status"] == "failed" and turn["answer"] == answer_text(2)
    assert turn["errorCode"] == "upstream_timeout"


def test_a_per_provider_first_token_timeout_fires(app, token):
    started = time.monotonic()
    result = stream_chat(app.url, token, {"prompt": "[mock ttft=3 tokens=2]", "model": "first-token-bounded"})
    assert time.monotonic() - started < 2.5
    assert result.error["code"] == "upstream_timeout"
    assert "first token within 0.3 s" in result.error["message"]
    assert result.text == ""


def test_configured_names_are_listed_by_v1_models(app, token):
    response = httpx.get(f"{app.url}/v1/models", headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    names = response.json()["models"]
    for name in ("primary", "claude", "cutting", "slow", "idle-bounded", "first-token-bounded", "mock", "default"):
        assert name in names
    assert response.json()["default"] == "default"
