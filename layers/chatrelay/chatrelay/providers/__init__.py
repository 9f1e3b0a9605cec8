"""LLM vendors behind one interface."""

from chatrelay.providers.base import ChatDelta, ChatMessage, Provider, StreamParams, Usage
from chatrelay.providers.openai_compat import OpenAICompatProvider
from chatrelay.providers.registry import Preset, ProviderRegistry

__all__ = ["ChatDelta", "ChatMessage", "OpenAICompatProvider", "Preset", "Provider", "ProviderRegistry", "StreamParams", "Usage"]
