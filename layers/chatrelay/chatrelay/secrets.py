"""Secrets by name: SSM Parameter Store (SecureString) or Secrets Manager.

The deployment passes names only (``CHATRELAY_TOKEN_SECRET_NAME=ssm:/chatrelay/token-secret``,
``LLM_API_KEY_SECRET_NAME=secretsmanager:chatrelay/llm``); values are fetched at start-up
(``GetParameter`` with decryption, ``GetSecretValue``) through ``chatrelay.aws``, cached for
an hour, and never logged. A value given directly (``CHATRELAY_TOKEN_SECRET``) wins, for
local use. (Powertools' parameters utility did this before; it imports boto3, which cost
every cold start ~100 ms more than these two calls need.)

``clear_cache()`` forgets every fetched value: after a SnapStart restore the secrets are read
again (``chatrelay/snapshot.py``), so a value rotated since the snapshot was taken is not
served by every restored copy.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

from pydantic import SecretStr

from chatrelay.settings import Settings, get_settings


class SecretProvider(Protocol):
    def get(self, name: str, **kwargs: Any) -> Any: ...


_cache: dict[tuple[str, str], tuple[str, float]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


class AwsSecretStore:
    """``get(name)``: the value from SSM (``kind="ssm"``) or Secrets Manager, cached for ``max_age`` s."""

    def __init__(self, kind: str, region: str | None = None, **client_options: Any) -> None:
        self.kind = kind
        self._region = region
        self._options = client_options

    def get(self, name: str, *, decrypt: bool = True, max_age: float = 3600) -> str:
        key = (self.kind, name)
        with _cache_lock:
            hit = _cache.get(key)
        if hit is not None and time.monotonic() - hit[1] < max_age:
            return hit[0]
        value = self._fetch(name, decrypt)
        with _cache_lock:
            _cache[key] = (value, time.monotonic())
        return value

    def _fetch(self, name: str, decrypt: bool) -> str:
        from chatrelay import aws

        region = self._region or get_settings().aws_region
        if self.kind == "ssm":
            client = aws.ssm_client(region, **self._options)
            try:
                return client.call("GetParameter", {"Name": name, "WithDecryption": decrypt})["Parameter"]["Value"]
            finally:
                client.close()
        client = aws.secrets_manager_client(region, **self._options)
        try:
            return client.call("GetSecretValue", {"SecretId": name})["SecretString"]
        finally:
            client.close()


def _default_provider(kind: str) -> SecretProvider:
    return AwsSecretStore(kind)


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
