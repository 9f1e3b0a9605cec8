"""The process-wide objects routes depend on, built once (not per request)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fastapi import Request

from chatrelay.auth.tokens import TokenService
from chatrelay.observability import logger
from chatrelay.providers.registry import ProviderRegistry
from chatrelay.secrets import with_resolved_secrets
from chatrelay.settings import Settings
from chatrelay.store.dynamodb import DynamoDBChatStore


@dataclass
class Services:
    settings: Settings
    store: DynamoDBChatStore
    registry: ProviderRegistry
    tokens: TokenService

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        settings = with_resolved_secrets(settings)
        secret = settings.token_secret.get_secret_value() if settings.token_secret else None
        if secret is None:
            if not settings.dev_auth:
                raise RuntimeError(
                    "CHATRELAY_TOKEN_SECRET or CHATRELAY_TOKEN_SECRET_NAME is required "
                    "(or CHATRELAY_DEV_AUTH=1 for local use)"
                )
            # Local development only: tokens die with the process.
            secret = secrets.token_urlsafe(48)
            logger.warning("no CHATRELAY_TOKEN_SECRET: using a random one (dev auth)")
        return cls(
            settings=settings,
            store=DynamoDBChatStore(
                settings.chat_table,
                endpoint_url=settings.dynamodb_endpoint_url,
                region=settings.aws_region,
                retention_days=settings.retention_days,
                max_threads=settings.storage_threads,
                stale_after_seconds=settings.stale_after,
            ),
            registry=ProviderRegistry(settings),
            tokens=TokenService(
                secret,
                issuer=settings.token_issuer,
                audience=settings.token_audience,
                ttl_seconds=settings.token_ttl_seconds,
            ),
        )


def get_services(request: Request) -> Services:
    return request.app.state.services
