"""Provider presets by name, built from settings, and one live provider per name.

A request's ``model`` (alias ``largeModel``) names a preset, not a vendor model id,
so operators decide which vendor and model stand behind each name. Two sources:

* **Environment presets.** Vendor presets are enabled by their API key in the
  environment (``DEEPSEEK_API_KEY`` ...); ``<NAME>_BASE_URL`` and ``<NAME>_MODEL``
  override the built-in values. ``anthropic`` needs ``ANTHROPIC_API_KEY``, ``ernie``
  (Baidu ERNIE v1) ``ERNIE_API_KEY`` and ``ERNIE_SECRET_KEY``, ``bedrock`` a
  ``BEDROCK_MODEL`` (credentials are the IAM role's). ``chatrelay.settings`` names and
  reads these variables (``VENDOR_VARIABLES``). ``default`` is the
  ``LLM_BASE_URL`` / ``LLM_API_KEY`` / ``LLM_MODEL`` trio, or the local mock when
  ``LLM_BASE_URL`` is unset, so a fresh checkout streams with no key.
* **The providers file** (``CHATRELAY_PROVIDERS_FILE``, see ``config.py``): any kind,
  per-provider timeouts and an ordered fallback list. Its entries win over
  environment presets of the same name.

``KINDS`` maps each kind to its adapter factory and its defaults. A preset with a
fallback list is served by a :class:`FailoverProvider` over itself and its fallbacks;
one with its own timeouts by a :class:`TimedProvider`. Each vendor adapter (one HTTP
pool or boto3 client) is built once and shared by every name that uses it. Keys given
by secret name are read through ``chatrelay.secrets`` when the adapter is built.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import NamedTuple

import msgspec

from chatrelay import errors, secrets
from chatrelay.providers.base import ChatDelta, ChatMessage, Provider, StreamParams
from chatrelay.providers.config import ProvidersFile, ProvidersFileError, credential, load_providers_file
from chatrelay.providers.deadlines import TimedProvider, Timeouts
from chatrelay.providers.failover import FailoverProvider, Member
from chatrelay.settings import Settings, environment_variable, vendor_variables


class Preset(msgspec.Struct, frozen=True):
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
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    fallback: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    """Other names clients send for this preset (providers file ``aliases``)."""


MOCK_MODEL = "mock-gpt"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
ERNIE_MODEL = "ernie-4.0-turbo-8k"
# The native adapters' endpoints (their modules' DEFAULT_BASE_URL, which a test compares): written
# here so that building a registry imports no adapter; each is imported by its factory when used.
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ERNIE_BASE_URL = "https://aip.baidubce.com"


class Vendor(NamedTuple):
    """An environment preset's built-in values."""

    base_url: str
    model: str | None
    include_usage: bool = True
    """Whether the vendor accepts ``stream_options.include_usage``."""
    kind: str = "openai_compat"
    needs: tuple[str, ...] = ("api_key",)
    """The variables (``VendorVariables`` fields) that enable the preset."""


VENDOR_PRESETS: dict[str, Vendor] = {
    "openai": Vendor("https://api.openai.com/v1", "gpt-4o-mini"),
    "deepseek": Vendor("https://api.deepseek.com", "deepseek-chat"),
    "qwen": Vendor("https://dashscope.aliyuncs.com/compatible-mode/v1", "qwen-plus"),
    "zhipu": Vendor("https://open.bigmodel.cn/api/paas/v4", "glm-4-flash", include_usage=False),
    "baidu": Vendor("https://qianfan.baidubce.com/v2", "ernie-4.0-turbo-8k"),
    "hunyuan": Vendor("https://api.hunyuan.cloud.tencent.com/v1", "hunyuan-turbos-latest"),
    "moonshot": Vendor("https://api.moonshot.cn/v1", "moonshot-v1-8k"),
}
"""The OpenAI-compatible presets; an ``openai_compat`` providers-file entry of the same name inherits them."""

NATIVE_PRESETS: dict[str, Vendor] = {
    "anthropic": Vendor(ANTHROPIC_BASE_URL, ANTHROPIC_MODEL, kind="anthropic"),
    "ernie": Vendor(ERNIE_BASE_URL, ERNIE_MODEL, kind="baidu_ernie", needs=("api_key", "secret_key")),
    "bedrock": Vendor("", None, kind="bedrock", needs=("model",)),
}


class Wiring(NamedTuple):
    """What an adapter factory gets: the preset, its API key (a secret name already read), its client timeouts."""

    preset: Preset
    api_key: str | None
    connect_timeout: float
    read_timeout: float
    settings: Settings


def _openai_compat(w: Wiring) -> Provider:
    from chatrelay.providers.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(w.preset.name, w.preset.base_url, w.api_key, include_usage=w.preset.include_usage,
                                connect_timeout=w.connect_timeout, read_timeout=w.read_timeout)


def _anthropic(w: Wiring) -> Provider:
    from chatrelay.providers import anthropic_messages

    return anthropic_messages.AnthropicProvider(
        w.preset.name, w.api_key, w.preset.base_url or ANTHROPIC_BASE_URL,
        max_tokens=w.preset.max_tokens or anthropic_messages.DEFAULT_MAX_TOKENS,
        connect_timeout=w.connect_timeout, read_timeout=w.read_timeout)


def _baidu_ernie(w: Wiring) -> Provider:
    from chatrelay.providers import baidu_ernie

    preset = w.preset
    secret_key = preset.secret_key or (_secret(preset, preset.secret_key_secret) if preset.secret_key_secret else None)
    if not w.api_key or not secret_key:
        raise errors.UpstreamAuthError(f"{preset.name}: Baidu ERNIE needs an API key and a secret key")
    return baidu_ernie.BaiduErnieProvider(preset.name, w.api_key, secret_key,
                                          preset.base_url or ERNIE_BASE_URL,
                                          connect_timeout=w.connect_timeout, read_timeout=w.read_timeout)


def _bedrock(w: Wiring) -> Provider:
    from chatrelay.providers.bedrock_converse import BedrockConverseProvider  # boto3 costs start-up time

    return BedrockConverseProvider(w.preset.name, region=w.preset.region or w.settings.aws_region,
                                   endpoint_url=w.preset.base_url or None, connect_timeout=w.connect_timeout,
                                   read_timeout=w.read_timeout)


class AdapterKind(msgspec.Struct, frozen=True):
    """One ``kind`` of the providers file: its adapter factory and the defaults of its entries."""

    build: Callable[[Wiring], Provider]
    default_base_url: Callable[[Settings], str | None] = lambda settings: None
    default_model: str | None = None
    needs_base_url: bool = True
    needs_key_pair: bool = False
    """An API key and a secret key (each literal, from the environment or by secret name)."""
    module: str | None = None
    """The adapter's module, which :meth:`ProviderRegistry.import_adapters` loads at start-up (None: when
    first used, as Bedrock's, with boto3)."""


_OPENAI_COMPAT = "chatrelay.providers.openai_compat"
KINDS: dict[str, AdapterKind] = {
    "openai_compat": AdapterKind(_openai_compat, module=_OPENAI_COMPAT),
    "mock": AdapterKind(_openai_compat, lambda settings: settings.mock_llm_base_url, MOCK_MODEL, module=_OPENAI_COMPAT),
    "anthropic": AdapterKind(_anthropic, lambda settings: ANTHROPIC_BASE_URL,
                             module="chatrelay.providers.anthropic_messages"),
    "baidu_ernie": AdapterKind(_baidu_ernie, lambda settings: ERNIE_BASE_URL, needs_key_pair=True,
                               module="chatrelay.providers.baidu_ernie"),
    "bedrock": AdapterKind(_bedrock, lambda settings: "", needs_base_url=False),
}


def build_presets(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Preset]:
    """The presets the environment enables (see the module docstring); ``environ`` replaces the process's."""
    presets: dict[str, Preset] = {"mock": Preset("mock", settings.mock_llm_base_url, MOCK_MODEL, kind="mock")}
    variables = vendor_variables(environ)
    for name, vendor in {**VENDOR_PRESETS, **NATIVE_PRESETS}.items():
        found = variables[name]
        if found.has(*vendor.needs):
            presets[name] = Preset(name, found.base_url or vendor.base_url, found.model or vendor.model or "",
                                   found.api_key, vendor.include_usage, kind=vendor.kind,
                                   secret_key=found.secret_key, region=found.region)
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

    def lookup(variable: str) -> str | None:
        return environment_variable(variable, environ)

    presets: dict[str, Preset] = {}
    for name, entry in parsed.providers.items():
        kind = KINDS[entry.kind]
        vendor = VENDOR_PRESETS.get(name) if entry.kind == "openai_compat" else None
        include_usage = entry.include_usage if entry.include_usage is not None else (
            vendor.include_usage if vendor else True)
        base_url = entry.base_url or (vendor.base_url if vendor else kind.default_base_url(settings))
        model = entry.model or (vendor.model if vendor else kind.default_model)
        if not base_url and kind.needs_base_url:
            raise ProvidersFileError(f"provider {name}: base_url is required for kind {entry.kind}")
        if not model:
            raise ProvidersFileError(f"provider {name}: model is required")
        api_key = credential(name, lookup, literal=entry.api_key, env=entry.api_key_env)
        secret_key = credential(name, lookup, literal=entry.secret_key, env=entry.secret_key_env)
        if kind.needs_key_pair and not (
            (api_key or entry.secret_name) and (secret_key or entry.secret_key_secret_name)
        ):
            raise ProvidersFileError(f"provider {name}: kind {entry.kind} needs an API key and a secret key")
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
            aliases=tuple(entry.aliases),
        )
    return presets


def _secret(preset: Preset, reference: str) -> str:
    """A key from its secret reference (``chatrelay.secrets``); any failure means we cannot authenticate."""
    try:
        return secrets.resolve_secret(reference)
    except Exception as exc:
        raise errors.UpstreamAuthError(f"{preset.name}: the key's secret could not be read") from exc


def build_provider(preset: Preset, settings: Settings) -> Provider:
    """The vendor adapter for one preset (no timeouts wrapper, no failover)."""
    kind = KINDS.get(preset.kind)
    if kind is None:
        raise ValueError(f"unknown provider kind {preset.kind!r}")
    limits = preset.timeouts
    connect = limits.connect or settings.connect_timeout
    read = max(limits.first_token or settings.first_token_timeout, limits.idle or settings.idle_timeout) + 5
    api_key = preset.api_key or (_secret(preset, preset.api_key_secret) if preset.api_key_secret else None)
    return kind.build(Wiring(preset, api_key, connect, read, settings))


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
        self._spellings = self._index_spellings()
        self._members: dict[str, Provider] = {}
        """One vendor adapter (possibly with its timeouts) per name; the registry owns these."""
        self._providers: dict[str, Provider] = {}
        """What ``resolve`` hands out: the member itself, or a failover over members."""

    def _check_fallbacks(self) -> None:
        for preset in self._presets.values():
            for name in preset.fallback:
                if name not in self._presets:
                    raise ProvidersFileError(f"provider {preset.name}: fallback {name!r} is not a configured provider")

    def _index_spellings(self) -> dict[str, str]:
        """Every name and alias, case-folded, to its preset's name: clients send ``BAIDU`` for ``baidu``."""
        spellings: dict[str, str] = {}
        for preset in self._presets.values():
            for spelled in (preset.name, *preset.aliases):
                key = spelled.casefold()
                if spellings.get(key, preset.name) != preset.name:
                    raise ProvidersFileError(f"{spelled!r} names both {spellings[key]} and {preset.name}")
                spellings[key] = preset.name
        return spellings

    def import_adapters(self) -> None:
        """Import the adapters the presets use (the streaming function does, at start-up: its first
        turn needs one; the API function, which calls no vendor, never does)."""
        import importlib

        modules = {KINDS[preset.kind].module for preset in self._presets.values() if preset.kind in KINDS}
        for module in sorted(m for m in modules if m is not None):
            importlib.import_module(module)

    @property
    def names(self) -> list[str]:
        return sorted(self._presets)

    @property
    def aliases(self) -> dict[str, str]:
        """Alias -> preset name, as configured."""
        return {alias: p.name for p in self._presets.values() for alias in p.aliases}

    def preset(self, name: str) -> Preset:
        preset = self._presets.get(name)
        if preset is None:
            canonical = self._spellings.get(name.casefold())
            preset = self._presets.get(canonical) if canonical else None
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
        self._spellings = self._index_spellings()
        self._members[preset.name] = provider
        self._providers[preset.name] = provider

    async def aclose(self) -> None:
        for provider in self._members.values():
            await provider.aclose()
        self._members.clear()
        self._providers.clear()
