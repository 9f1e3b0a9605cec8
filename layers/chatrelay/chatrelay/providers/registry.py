"""Provider presets by name, built from settings, and one live provider per name.

A request's ``model`` (alias ``largeModel``) names a preset, not a vendor model id,
so operators decide which vendor and model stand behind each name. Two sources:

* **Environment presets.** Vendor presets are enabled by their API key in the
  environment (``DEEPSEEK_API_KEY`` ...); ``<NAME>_BASE_URL`` and ``<NAME>_MODEL``
  override the built-in values. ``anthropic`` needs ``ANTHROPIC_API_KEY``, ``ernie``
  (Baidu ERNIE v1) ``ERNIE_API_KEY`` and ``ERNIE_SECRET_KEY``, ``bedrock`` a
  ``BEDROCK_MODEL`` (credentials are the IAM role's). ``default`` is the
  ``LLM_BASE_URL`` / ``LLM_API_KEY`` / ``LLM_MODEL`` trio, or the local mock when
  ``LLM_BASE_URL`` is unset, so a fresh checkout streams with no key.
* **The providers file** (``CHATRELAY_PROVIDERS_FILE``, see ``config.py``): any kind,
  per-provider timeouts and an ordered fallback list. Its entries win over
  environment presets of the same name.

A preset with a fallback list is served by a :class:`FailoverProvider` over itself
and its fallbacks; one with its own timeouts by a :class:`TimedProvider`. Each
vendor adapter (one HTTP pool or boto3 client) is built once and shared by every
name that uses it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from chatrelay import errors
from chatrelay.providers import anthropic_messages, baidu_ernie
from chatrelay.providers.base import ChatDelta, ChatMessage, Provider, StreamParams
from chatrelay.providers.config import ProvidersFile, ProvidersFileError, credential, load_providers_file
from chatrelay.providers.deadlines import TimedProvider, Timeouts
from chatrelay.providers.failover import FailoverProvider, Member
from chatrelay.providers.openai_compat import OpenAICompatProvider
from chatrelay.settings import Settings

KINDS = ("openai_compat", "anthropic", "bedrock", "baidu_ernie", "mock")


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    base_url: str
    model: str
    api_key: str | None = None
    include_usage: bool = True
    """Whether the vendor accepts ``stream_options.include_usage`` (OpenAI-compatible kinds)."""
    kind: str = "openai_compat"
    secret_key: str | None = None
    """Baidu ERNIE v1: the secret key paired with ``api_key``."""
    api_key_secret: str | None = None
    """A secret reference for the API key, resolved when the provider is first used."""
    secret_key_secret: str | None = None
    region: str | None = None
    """Bedrock: the AWS region (default: the service's ``AWS_REGION``)."""
    max_tokens: int | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    fallback: tuple[str, ...] = ()


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
ANTHROPIC_MODEL = "claude-sonnet-4-5"
ERNIE_MODEL = "ernie-4.0-turbo-8k"


def build_presets(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Preset]:
    """The presets the environment enables (see the module docstring)."""
    env = os.environ if environ is None else environ
    presets: dict[str, Preset] = {"mock": Preset("mock", settings.mock_llm_base_url, MOCK_MODEL, kind="mock")}
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
    if env.get("ANTHROPIC_API_KEY"):
        presets["anthropic"] = Preset(
            "anthropic", env.get("ANTHROPIC_BASE_URL", anthropic_messages.DEFAULT_BASE_URL),
            env.get("ANTHROPIC_MODEL", ANTHROPIC_MODEL), env["ANTHROPIC_API_KEY"], kind="anthropic")
    if env.get("ERNIE_API_KEY") and env.get("ERNIE_SECRET_KEY"):
        presets["ernie"] = Preset(
            "ernie", env.get("ERNIE_BASE_URL", baidu_ernie.DEFAULT_BASE_URL), env.get("ERNIE_MODEL", ERNIE_MODEL),
            env["ERNIE_API_KEY"], kind="baidu_ernie", secret_key=env["ERNIE_SECRET_KEY"])
    if env.get("BEDROCK_MODEL"):
        presets["bedrock"] = Preset("bedrock", env.get("BEDROCK_ENDPOINT_URL", ""), env["BEDROCK_MODEL"],
                                    kind="bedrock", region=env.get("BEDROCK_REGION") or None)
    if settings.llm_base_url:
        presets["default"] = Preset(
            "default",
            settings.llm_base_url,
            settings.llm_model or MOCK_MODEL,
            settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        )
    else:
        presets["default"] = Preset("default", settings.mock_llm_base_url, settings.llm_model or MOCK_MODEL,
                                    kind="mock")
    return presets


def presets_from_file(
    settings: Settings, parsed: ProvidersFile, environ: Mapping[str, str] | None = None
) -> dict[str, Preset]:
    """The providers file's entries as presets (keys from the environment, secrets by name)."""
    env = os.environ if environ is None else environ
    presets: dict[str, Preset] = {}
    for name, entry in parsed.providers.items():
        vendor = VENDOR_PRESETS.get(name) if entry.kind == "openai_compat" else None
        include_usage = entry.include_usage if entry.include_usage is not None else (vendor[2] if vendor else True)
        if entry.kind == "mock":
            base_url, model = entry.base_url or settings.mock_llm_base_url, entry.model or MOCK_MODEL
        elif entry.kind == "anthropic":
            base_url, model = entry.base_url or anthropic_messages.DEFAULT_BASE_URL, entry.model
        elif entry.kind == "baidu_ernie":
            base_url, model = entry.base_url or baidu_ernie.DEFAULT_BASE_URL, entry.model
        elif entry.kind == "bedrock":
            base_url, model = entry.base_url or "", entry.model
        else:
            base_url = entry.base_url or (vendor[0] if vendor else None)
            model = entry.model or (vendor[1] if vendor else None)
        if not base_url and entry.kind != "bedrock":
            raise ProvidersFileError(f"provider {name}: base_url is required for kind {entry.kind}")
        if not model:
            raise ProvidersFileError(f"provider {name}: model is required")
        api_key = credential(name, env, literal=entry.api_key, env=entry.api_key_env)
        secret_key = credential(name, env, literal=entry.secret_key, env=entry.secret_key_env)
        if entry.kind == "baidu_ernie" and not (
            (api_key or entry.secret_name) and (secret_key or entry.secret_key_secret_name)
        ):
            raise ProvidersFileError(f"provider {name}: Baidu ERNIE needs an API key and a secret key")
        timeouts = entry.timeouts
        presets[name] = Preset(
            name,
            base_url or "",
            model,
            api_key,
            include_usage,
            kind=entry.kind,
            secret_key=secret_key,
            api_key_secret=entry.secret_name,
            secret_key_secret=entry.secret_key_secret_name,
            region=entry.region,
            max_tokens=entry.max_tokens,
            timeouts=Timeouts(timeouts.connect, timeouts.first_token, timeouts.idle, timeouts.total),
            fallback=tuple(entry.fallback),
        )
    return presets


def _secret(preset: Preset, reference: str) -> str:
    """A key from its secret reference, through ``chatrelay.secrets`` when that module exists."""
    try:
        from chatrelay.secrets import resolve_secret
    except ImportError as exc:  # pragma: no cover - secrets.py is another engineer's
        raise errors.UpstreamAuthError(f"{preset.name}: secret names are not supported here") from exc
    try:
        return resolve_secret(reference)
    except Exception as exc:  # noqa: BLE001 - any failure to read a key means we cannot authenticate
        raise errors.UpstreamAuthError(f"{preset.name}: the key's secret could not be read") from exc


def build_provider(preset: Preset, settings: Settings) -> Provider:
    """The vendor adapter for one preset (no timeouts wrapper, no failover)."""
    limits = preset.timeouts
    connect = limits.connect or settings.connect_timeout
    read = max(limits.first_token or settings.first_token_timeout, limits.idle or settings.idle_timeout) + 5
    api_key = preset.api_key or (_secret(preset, preset.api_key_secret) if preset.api_key_secret else None)
    if preset.kind in ("openai_compat", "mock"):
        return OpenAICompatProvider(preset.name, preset.base_url, api_key, include_usage=preset.include_usage,
                                    connect_timeout=connect, read_timeout=read)
    if preset.kind == "anthropic":
        return anthropic_messages.AnthropicProvider(
            preset.name, api_key, preset.base_url or anthropic_messages.DEFAULT_BASE_URL,
            max_tokens=preset.max_tokens or anthropic_messages.DEFAULT_MAX_TOKENS,
            connect_timeout=connect, read_timeout=read)
    if preset.kind == "baidu_ernie":
        secret_key = preset.secret_key or (
            _secret(preset, preset.secret_key_secret) if preset.secret_key_secret else None)
        if not api_key or not secret_key:
            raise errors.UpstreamAuthError(f"{preset.name}: Baidu ERNIE needs an API key and a secret key")
        return baidu_ernie.BaiduErnieProvider(preset.name, api_key, secret_key,
                                              preset.base_url or baidu_ernie.DEFAULT_BASE_URL,
                                              connect_timeout=connect, read_timeout=read)
    if preset.kind == "bedrock":
        from chatrelay.providers.bedrock_converse import BedrockConverseProvider

        return BedrockConverseProvider(preset.name, region=preset.region or settings.aws_region,
                                       endpoint_url=preset.base_url or None, connect_timeout=connect,
                                       read_timeout=read)
    raise ValueError(f"unknown provider kind {preset.kind!r}")


class _Deferred:
    """A registry member looked up (and built) on its first stream, not when the failover is made."""

    def __init__(self, name: str, member: Callable[[str], Provider]) -> None:
        self.name = name
        self._member = member

    def stream(self, messages: Sequence[ChatMessage], params: StreamParams) -> AsyncIterator[ChatDelta]:
        return self._member(self.name).stream(messages, params)

    async def aclose(self) -> None:
        """The member itself belongs to the registry."""


class ProviderRegistry:
    """Presets plus one live provider per preset, created on first use."""

    def __init__(
        self,
        settings: Settings,
        presets: Mapping[str, Preset] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._settings = settings
        if presets is None:
            presets = build_presets(settings, environ)
            if settings.providers_file:
                presets.update(presets_from_file(settings, load_providers_file(settings.providers_file), environ))
        self._presets = dict(presets)
        self._check_fallbacks()
        self._members: dict[str, Provider] = {}
        """One vendor adapter (possibly with its timeouts) per name; the registry owns these."""
        self._providers: dict[str, Provider] = {}
        """What ``resolve`` hands out: the member itself, or a failover over members."""

    def _check_fallbacks(self) -> None:
        for preset in self._presets.values():
            for name in preset.fallback:
                if name not in self._presets:
                    raise ProvidersFileError(f"provider {preset.name}: fallback {name!r} is not a configured provider")

    @property
    def names(self) -> list[str]:
        return sorted(self._presets)

    def preset(self, name: str) -> Preset:
        preset = self._presets.get(name)
        if preset is None:
            raise errors.UnknownModel(f"unknown model {name!r}", field="model")
        return preset

    def resolve(self, name: str | None) -> tuple[Preset, Provider]:
        preset = self.preset(name or self._settings.default_model)
        provider = self._providers.get(preset.name)
        if provider is None:
            if preset.fallback:
                members = [Member(preset.name, self._member(preset.name), preset.model)]
                # Fallbacks are built when first reached: one whose key cannot be read must not
                # take the primary down with it.
                members += [Member(n, _Deferred(n, self._member), self._presets[n].model) for n in preset.fallback]
                provider = FailoverProvider(preset.name, members)
            else:
                provider = self._member(preset.name)
            self._providers[preset.name] = provider
        return preset, provider

    def _member(self, name: str) -> Provider:
        member = self._members.get(name)
        if member is None:
            preset = self._presets[name]
            member = build_provider(preset, self._settings)
            if preset.timeouts.bounds_stream:
                member = TimedProvider(member, preset.timeouts)
            self._members[name] = member
        return member

    def register(self, preset: Preset, provider: Provider) -> None:
        """Put a ready provider behind a name (tests, and vendors with native adapters)."""
        self._presets[preset.name] = preset
        self._members[preset.name] = provider
        self._providers[preset.name] = provider

    async def aclose(self) -> None:
        for provider in self._members.values():
            await provider.aclose()
        self._members.clear()
        self._providers.clear()
