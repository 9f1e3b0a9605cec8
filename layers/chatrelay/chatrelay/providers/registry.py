"""Provider presets by name, built from settings.

A request's ``model`` (alias ``largeModel``) names a preset, not a vendor model id,
so operators decide which vendor and model stand behind each name. Vendor presets
are enabled by their API key in the environment (``DEEPSEEK_API_KEY`` ...);
``<NAME>_BASE_URL`` and ``<NAME>_MODEL`` override the built-in values. ``default``
is the ``LLM_BASE_URL`` / ``LLM_API_KEY`` / ``LLM_MODEL`` trio, or the local mock
when ``LLM_BASE_URL`` is unset, so a fresh checkout streams with no key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from chatrelay import errors
from chatrelay.providers.base import Provider
from chatrelay.providers.openai_compat import OpenAICompatProvider
from chatrelay.settings import Settings


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    base_url: str
    model: str
    api_key: str | None = None
    include_usage: bool = True
    """Whether the vendor accepts ``stream_options.include_usage``."""


# name -> (base URL, default model id, accepts stream_options)
VENDOR_PRESETS: dict[str, tuple[str, str, bool]] = {
    "openai": ("https://api.openai.com/v1", "gpt-4o-mini", True),
    "deepseek": ("https://api.deepseek.com", "deepseek-chat", True),
    "qwen": ("https://dashscope.aliyuncs.com/compatible-mode/v1", "qwen-plus", True),
    "zhipu": ("https://open.bigmodel.cn/api/paas/v4", "glm-4-flash", False),
    "baidu": ("https://qianfan.baidubce.com/v2", "ernie-4.0-turbo-8k", True),
    "hunyuan": ("https://api.hunyuan.cloud.tencent.com/v1", "hunyuan-turbos-latest", True),
    "moonshot": ("https://api.moonshot.cn/v1", "moonshot-v1-8k", True),
}

MOCK_MODEL = "mock-gpt"


def build_presets(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Preset]:
    env = os.environ if environ is None else environ
    presets: dict[str, Preset] = {"mock": Preset("mock", settings.mock_llm_base_url, MOCK_MODEL)}
    for name, (base_url, model, include_usage) in VENDOR_PRESETS.items():
        prefix = name.upper()
        key = env.get(f"{prefix}_API_KEY")
        if key:
            presets[name] = Preset(
                name,
                env.get(f"{prefix}_BASE_URL", base_url),
                env.get(f"{prefix}_MODEL", model),
                key,
                include_usage,
            )
    if settings.llm_base_url:
        presets["default"] = Preset(
            "default",
            settings.llm_base_url,
            settings.llm_model or MOCK_MODEL,
            settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        )
    else:
        presets["default"] = Preset("default", settings.mock_llm_base_url, settings.llm_model or MOCK_MODEL)
    return presets


class ProviderRegistry:
    """Presets plus one live provider per preset, created on first use."""

    def __init__(self, settings: Settings, presets: Mapping[str, Preset] | None = None) -> None:
        self._settings = settings
        self._presets = dict(presets if presets is not None else build_presets(settings))
        self._providers: dict[str, Provider] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._presets)

    def resolve(self, name: str | None) -> tuple[Preset, Provider]:
        preset_name = name or self._settings.default_model
        preset = self._presets.get(preset_name)
        if preset is None:
            raise errors.UnknownModel(f"unknown model {preset_name!r}", field="model")
        provider = self._providers.get(preset_name)
        if provider is None:
            provider = OpenAICompatProvider(
                preset.name,
                preset.base_url,
                preset.api_key,
                include_usage=preset.include_usage,
                connect_timeout=self._settings.connect_timeout,
                read_timeout=max(self._settings.first_token_timeout, self._settings.idle_timeout) + 5,
            )
            self._providers[preset_name] = provider
        return preset, provider

    def register(self, preset: Preset, provider: Provider) -> None:
        """Put a ready provider behind a name (tests, and vendors with native adapters)."""
        self._presets[preset.name] = preset
        self._providers[preset.name] = provider

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
