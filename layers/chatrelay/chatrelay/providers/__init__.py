"""LLM vendors behind one interface.

Adapters: ``openai_compat`` (OpenAI and its copies: DeepSeek, DashScope, Zhipu,
Qianfan v2, Hunyuan, Moonshot), ``anthropic_messages``, ``bedrock_converse``
(boto3, imported lazily), ``baidu_ernie`` (ERNIE v1); the HTTP ones meet httpx
through ``http`` (client, error mapping, SSE decoder). Wrappers: ``deadlines``
(per-provider time limits) and ``failover`` (an ordered list of providers).
``registry`` builds them from settings and the providers file (``config``).
"""

from typing import Any

from chatrelay.providers.base import ChatDelta, ChatMessage, Provider, StreamParams, Usage

# The adapters, wrappers and registry load when first named: the API function builds a registry
# but never calls a vendor, and importing the HTTP adapters was part of its every cold start.
_LAZY = {
    "TimedProvider": "chatrelay.providers.deadlines", "Timeouts": "chatrelay.providers.deadlines",
    "FailoverProvider": "chatrelay.providers.failover", "Member": "chatrelay.providers.failover",
    "OpenAICompatProvider": "chatrelay.providers.openai_compat",
    "Preset": "chatrelay.providers.registry", "ProviderRegistry": "chatrelay.providers.registry",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chatrelay.providers' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ChatDelta",
    "ChatMessage",
    "FailoverProvider",
    "Member",
    "OpenAICompatProvider",
    "Preset",
    "Provider",
    "ProviderRegistry",
    "StreamParams",
    "TimedProvider",
    "Timeouts",
    "Usage",
]
