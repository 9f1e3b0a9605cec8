"""The providers file (``CHATRELAY_PROVIDERS_FILE``): named providers, their kinds, keys, timeouts, fallbacks.

YAML (``.yaml``/``.yml``, needs PyYAML) or JSON::

    providers:
      deepseek:                        # the name clients send as "model"
        kind: openai_compat            # openai_compat | anthropic | bedrock | baidu_ernie | mock
        model: deepseek-chat           # base_url/model default to the built-in vendor preset of that name
        api_key_env: DEEPSEEK_API_KEY  # or secret_name: ssm:/chatrelay/deepseek (resolved by chatrelay.secrets)
        timeouts: {connect: 5, first_token: 20, idle: 30, total: 300}
        fallback: [qwen, claude]       # tried in order when deepseek fails before its first token

Keys never live in the file: ``api_key_env`` names an environment variable and
``secret_name`` a secret reference (``ssm:/name`` or ``secretsmanager:name``) read
when the provider is first used; ``api_key`` (a literal) is accepted for local
fakes only. Baidu ERNIE v1 also needs ``secret_key_env`` / ``secret_key_secret_name``.
A name that is also a built-in preset (``deepseek``, ``qwen`` ...) inherits its base
URL, model id and ``include_usage``; any field given here wins.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

Kind = Literal["openai_compat", "anthropic", "bedrock", "baidu_ernie", "mock"]
NAME_PATTERN = r"\A[0-9A-Za-z][0-9A-Za-z_.:-]{0,63}\Z"


class ProvidersFileError(ValueError):
    """The providers file is missing, unreadable or invalid (raised at start-up)."""


class TimeoutsConfig(BaseModel):
    # Built when a providers file is read (without one, never).
    model_config = ConfigDict(extra="forbid", defer_build=True)

    connect: PositiveFloat | None = None
    first_token: PositiveFloat | None = None
    idle: PositiveFloat | None = None
    total: PositiveFloat | None = None


class ProviderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    kind: Kind = "openai_compat"
    base_url: str | None = None
    """OpenAI-compatible: the ``/v1``-style root; Anthropic/Baidu: the API host; Bedrock: an endpoint override."""
    model: str | None = None
    """The vendor's model id (Bedrock ``modelId``, ERNIE endpoint name such as ``completions_pro``)."""
    api_key: str | None = None
    api_key_env: str | None = None
    secret_name: str | None = None
    secret_key: str | None = None
    secret_key_env: str | None = None
    secret_key_secret_name: str | None = None
    region: str | None = None
    include_usage: bool | None = None
    """OpenAI-compatible: send ``stream_options.include_usage`` (vendors that reject it: false)."""
    max_tokens: PositiveInt | None = None
    """Default cap on output tokens (Anthropic requires one; default 4096)."""
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    fallback: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list, max_length=16)
    """Other names clients may send for this provider (``model`` / ``largeModel``), e.g. the
    ``BAIDU`` hard-coded in a shipped client; matched case-insensitively, as names are."""


class ProvidersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    providers: dict[str, ProviderConfig]


def load_providers_file(path: str | os.PathLike[str]) -> ProvidersFile:
    """Parse and validate the file; every problem is a :class:`ProvidersFileError` naming it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProvidersFileError(f"providers file {file}: {exc.strerror or exc}") from exc
    raw = _parse(file, text)
    try:
        parsed = ProvidersFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ProvidersFileError(f"providers file {file}: {where}: {first.get('msg')}") from exc
    for name, entry in parsed.providers.items():
        for spelled in (name, *entry.aliases):
            if not re.fullmatch(NAME_PATTERN, spelled):
                raise ProvidersFileError(f"providers file {file}: {spelled!r} is not a valid provider name")
        if name in entry.fallback:
            raise ProvidersFileError(f"providers file {file}: {name} lists itself as a fallback")
    return parsed


def _parse(file: Path, text: str) -> Any:
    if file.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML ships with the service
            raise ProvidersFileError(f"providers file {file}: PyYAML is needed for YAML (or use JSON)") from exc
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ProvidersFileError(f"providers file {file}: invalid YAML: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ProvidersFileError(f"providers file {file}: invalid JSON: {exc}") from exc


def credential(name: str, lookup: Callable[[str], str | None], *, literal: str | None,
               env: str | None) -> str | None:
    """A key given literally or through an environment variable, read by ``lookup`` (secret names resolve later)."""
    if literal:
        return literal
    if env:
        value = lookup(env)
        if not value:
            raise ProvidersFileError(f"provider {name}: environment variable {env} is not set")
        return value
    return None
