"""LLM vendors behind one interface.

Adapters: ``openai_compat`` (OpenAI and its copies: DeepSeek, DashScope, Zhipu,
Qianfan v2, Hunyuan, Moonshot), ``anthropic_messages``, ``bedrock_converse``
(boto3, imported lazily), ``baidu_ernie`` (ERNIE v1); the HTTP ones meet httpx
through ``http`` (client, error mapping, SSE decoder). Wrappers: ``deadlines``
(per-provider time limits) and ``failover`` (an ordered list of providers).
``registry`` builds them from settings and the providers file (``config``).
"""

from chatrelay.providers.base import ChatDelta, ChatMessage, Provider, StreamParams, Usage
from chatrelay.providers.deadlines import TimedProvider, Timeouts
from chatrelay.providers.failover import FailoverProvider, Member
from chatrelay.providers.openai_compat import OpenAICompatProvider
from chatrelay.providers.registry import Preset, ProviderRegistry

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
