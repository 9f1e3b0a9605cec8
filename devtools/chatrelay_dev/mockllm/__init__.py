"""Faithful local fakes of the LLM vendors' streaming APIs (``python -m chatrelay_dev.mockllm``)."""

from chatrelay_dev.mockllm.common import REASONING_TOKENS, Fake, MockConfig, answer_text, answer_tokens
from chatrelay_dev.mockllm.server import MockLLM, create_mock_app

__all__ = ["REASONING_TOKENS", "Fake", "MockConfig", "MockLLM", "answer_text", "answer_tokens", "create_mock_app"]
