"""The fake upstream is faithful: the official openai SDK consumes it as it would OpenAI."""

from __future__ import annotations

import openai
import pytest

from chatrelay_dev.mockllm import answer_text, answer_tokens
from chatrelay_dev.mockllm.common import literal_tokens
from tests.support.tricky import TRICKY_ANSWER, answer_directive


@pytest.fixture
def client(mock_llm):
    with openai.OpenAI(base_url=f"{mock_llm.url}/v1", api_key="sk-test", max_retries=0, timeout=10) as sdk:
        yield sdk


def test_sdk_streams_chunks_and_the_usage_chunk(client):
    stream = client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "hi [mock tokens=15]"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert contents == answer_tokens(15)
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == 15
    assert usage_chunk.usage.total_tokens == usage_chunk.usage.prompt_tokens + 15


def test_sdk_reads_a_literal_answer_with_unicode_line_breaks_byte_for_byte(client):
    stream = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": answer_directive()}], stream=True
    )
    contents = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert contents == literal_tokens(TRICKY_ANSWER) and "".join(contents) == TRICKY_ANSWER
    completion = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": answer_directive()}])
    assert completion.choices[0].message.content == TRICKY_ANSWER


def test_sdk_reads_reasoning_content_and_keepalive_comments(client):
    stream = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "[mock tokens=3 reasoning=4 keepalive=1]"}], stream=True
    )
    chunks = list(stream)
    reasoning = [getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks if c.choices]
    assert len([r for r in reasoning if r]) == 4
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer_text(3)


def test_sdk_non_streaming_completion(client):
    completion = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "[mock tokens=5]"}]
    )
    assert completion.choices[0].message.content == answer_text(5)
    assert completion.usage.completion_tokens == 5


@pytest.mark.parametrize(
    ("fault", "error"),
    [("http_429", openai.RateLimitError), ("http_500", openai.InternalServerError),
     ("http_401", openai.AuthenticationError)],
)
def test_sdk_maps_the_fakes_errors_to_its_own_exceptions(client, fault, error):
    with pytest.raises(error) as caught:
        client.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": f"[mock fault={fault}]"}], stream=True
        )
    assert caught.value.body["message"]


def test_sdk_sees_a_cut_stream_as_an_error(client):
    stream = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "[mock tokens=8 fault=cut fault_after=3]"}], stream=True
    )
    received = []
    with pytest.raises((openai.APIError, Exception)) as caught:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert not isinstance(caught.value, AssertionError)
    assert "".join(received) == answer_text(3)


def test_sdk_lists_models(client):
    assert [m.id for m in client.models.list()] == ["mock-gpt"]
