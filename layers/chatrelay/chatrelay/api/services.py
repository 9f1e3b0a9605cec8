"""The process-wide objects routes depend on, built once (not per request)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import cached_property

from fastapi import Request

from chatrelay.auth.refresh import RefreshTokens
from chatrelay.auth.tokens import TokenService
from chatrelay.auth.wechat import WeChatApi, wechat_api_from_settings
from chatrelay.observability import logger
from chatrelay.providers.registry import ProviderRegistry
from chatrelay.quotas import QuotaGuard, QuotaStore
from chatrelay.safety import ContentSafety, content_safety_from_settings
from chatrelay.secrets import with_resolved_secrets
from chatrelay.settings import Settings
from chatrelay.store.base import TurnStore
from chatrelay.store.dynamodb import DynamoDBChatStore
from chatrelay.store.refresh_tokens import RefreshTokenStore
from chatrelay.store.table import Table
from chatrelay.turns import TurnService


@dataclass
class Services:
    settings: Settings
    store: TurnStore
    registry: ProviderRegistry
    tokens: TokenService
    refresh_tokens: RefreshTokens | None = None
    quotas: QuotaGuard | None = None
    wechat: WeChatApi | None = None
    """None unless a WeChat app id and secret are configured (then WeChat login works)."""
    safety: ContentSafety | None = None
    """None unless CHATRELAY_CONTENT_SAFETY is on."""

    @cached_property
    def turns(self) -> TurnService:
        """Starting and resuming turns (the chat routes' one dependency)."""
        return TurnService(settings=self.settings, store=self.store, registry=self.registry, quotas=self.quotas,
                           safety=self.safety)

    async def aclose(self) -> None:
        await self.registry.aclose()
        if self.wechat is not None:
            await self.wechat.aclose()

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
        # One table for every record family: one client and one pool of worker threads.
        table = Table(settings.chat_table, endpoint_url=settings.dynamodb_endpoint_url, region=settings.aws_region,
                      max_threads=settings.storage_threads)
        store = DynamoDBChatStore(table, retention_days=settings.retention_days,
                                  stale_after_seconds=settings.stale_after)
        wechat = wechat_api_from_settings(settings)
        return cls(
            settings=settings,
            store=store,
            registry=ProviderRegistry(settings),
            tokens=TokenService(
                secret,
                issuer=settings.token_issuer,
                audience=settings.token_audience,
                ttl_seconds=settings.token_ttl_seconds,
            ),
            refresh_tokens=RefreshTokens(RefreshTokenStore(table), ttl_seconds=settings.refresh_token_ttl_seconds),
            quotas=QuotaGuard(
                QuotaStore(table),
                per_minute=settings.rate_limit_per_minute,
                tokens_per_day=settings.token_quota_per_day,
                max_streams=settings.max_concurrent_streams,
                lease_seconds=settings.stream_lease_seconds or settings.max_answer_seconds + 60,
            ),
            wechat=wechat,
            safety=content_safety_from_settings(settings, wechat),
        )


async def get_services(request: Request) -> Services:
    # async: FastAPI would run a plain def dependency in a worker thread (api/security.py).
    return request.app.state.services
