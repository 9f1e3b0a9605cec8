"""Secrets by name: SSM Parameter Store (SecureString) or Secrets Manager.

The deployment passes names only (``CHATRELAY_TOKEN_SECRET_NAME=ssm:/chatrelay/token-secret``,
``LLM_API_KEY_SECRET_NAME=secretsmanager:chatrelay/llm``); values are fetched once at
start-up with Powertools' parameters utility (cached) and never logged. A value given
directly (``CHATRELAY_TOKEN_SECRET``) wins, for local use.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import SecretStr

from chatrelay.settings import Settings


class SecretProvider(Protocol):
    def get(self, name: str, **kwargs: Any) -> Any: ...


def _default_provider(kind: str) -> SecretProvider:
    # Imported lazily: boto3 clients cost start-up time, and most local runs need none.
    from aws_lambda_powertools.utilities import parameters

    return parameters.SSMProvider() if kind == "ssm" else parameters.SecretsProvider()


def resolve_secret(reference: str, providers: dict[str, SecretProvider] | None = None) -> str:
    """The value behind ``ssm:<name>``, ``secretsmanager:<name>`` or a bare SSM ``/name``."""
    kind, sep, name = reference.partition(":")
    if not sep:
        kind, name = "ssm", reference
    if kind not in ("ssm", "secretsmanager") or not name:
        raise ValueError(f"not a secret reference: {reference!r} (use ssm:/name or secretsmanager:name)")
    provider = (providers or {}).get(kind) or _default_provider(kind)
    value = provider.get(name, decrypt=True, max_age=3600) if kind == "ssm" else provider.get(name, max_age=3600)
    if not isinstance(value, str) or not value:
        raise ValueError(f"secret {reference!r} is empty")
    return value


def with_resolved_secrets(settings: Settings, providers: dict[str, SecretProvider] | None = None) -> Settings:
    """Settings with secrets filled in from their names where no value was given."""
    updates: dict[str, SecretStr] = {}
    if settings.token_secret is None and settings.token_secret_name:
        updates["token_secret"] = SecretStr(resolve_secret(settings.token_secret_name, providers))
    if settings.llm_api_key is None and settings.llm_api_key_secret_name:
        updates["llm_api_key"] = SecretStr(resolve_secret(settings.llm_api_key_secret_name, providers))
    return settings.model_copy(update=updates) if updates else settings
