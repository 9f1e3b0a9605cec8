"""A faithful local fake of the OpenAI-compatible streaming API (``python -m chatrelay_dev.mockllm``)."""

from chatrelay_dev.mockllm.server import MockConfig, MockLLM, answer_text, answer_tokens, create_mock_app

__all__ = ["MockConfig", "MockLLM", "answer_text", "answer_tokens", "create_mock_app"]
