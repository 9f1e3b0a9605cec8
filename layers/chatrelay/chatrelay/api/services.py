"""The process-wide objects routes depend on, built once (not per request).

Under SnapStart they are built at init and shared by every copy restored from the snapshot,
so they can be closed and rebuilt (``before_snapshot`` / ``after_restore``, called by
chatrelay/snapshot.py): nothing pooled is captured in the snapshot, and each restored copy
reads its secrets again and gets its own clients and token caches.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from fastapi import Request

from chatrelay.auth.refresh import RefreshTokens
from chatrelay.auth.tokens import TokenService
from chatrelay.observability import logger
from chatrelay.providers.registry import ProviderRegistry
from chatrelay.secrets import with_resolved_secrets
from chatrelay.settings import Settings
from chatrelay.store.base import TurnStore
from chatrelay.store.dynamodb import DynamoDBChatStore
from chatrelay.store.refresh_tokens import RefreshTokenStore
from chatrelay.store.table import Table, forget_clients

if TYPE_CHECKING:
    from chatrelay.auth.wechat import WeChatApi
    from chatrelay.quotas import QuotaGuard
    from chatrelay.safety import ContentSafety
    from chatrelay.turns import TurnService


@dataclass
class Services:
    settings: Settings
    store: TurnStore
    registry: ProviderRegistry
    tokens: TokenService
    refresh_tokens: RefreshTokens | None = None
    wechat: WeChatApi | None = None
    """None unless a WeChat app id and secret are configured (then WeChat login works)."""
    safety: ContentSafety | None = None
    """None unless CHATRELAY_CONTENT_SAFETY is on."""
    table: Table | None = None
    """The chat table every store above writes to (``from_settings``): its client's pool is closed
    before a snapshot."""
    source_settings: Settings | None = field(default=None, repr=False)
    """The settings as given, secrets by name only: what ``after_restore`` rebuilds from."""

    @cached_property
    def quotas(self) -> QuotaGuard:
        """The per-user limits of chat turns, which only the turn service applies: built (and
        imported) with it, so the buffered API function, which starts no turn, never imports them."""
        from chatrelay.quotas import QuotaGuard, QuotaStore

        assert self.table is not None
        settings = self.settings
        return QuotaGuard(
            QuotaStore(self.table),
            per_minute=settings.rate_limit_per_minute,
            tokens_per_day=settings.token_quota_per_day,
            max_streams=settings.max_concurrent_streams,
            lease_seconds=settings.stream_lease_seconds or settings.max_answer_seconds + 60,
        )

    @cached_property
    def turns(self) -> TurnService:
        """Starting and resuming turns (the chat routes' one dependency)."""
        # Imported on first use: the buffered API function needs it only to stop a turn.
        from chatrelay.turns import TurnService

        return TurnService(settings=self.settings, store=self.store, registry=self.registry, quotas=self.quotas,
                           safety=self.safety)

    async def aclose(self) -> None:
        await self.registry.aclose()
        if self.wechat is not None:
            await self.wechat.aclose()

    async def before_snapshot(self) -> None:
        """Close every pooled connection (the providers' and WeChat's httpx clients, the DynamoDB
        client's pool): a connection captured in a snapshot is dead in every restored copy."""
        await self.aclose()
        if self.table is not None and hasattr(self.table.client, "close"):
            self.table.client.close()

    async def after_restore(self) -> None:
        """Rebuild everything from ``source_settings``, as at start-up: secrets read again (a value
        rotated since the snapshot is picked up), a new DynamoDB client and pool, a new provider
        registry (its adapters, pools and token caches are made on first use), a new WeChat client
        without a cached access token. Routes read the services from ``app.state`` per request,
        so they all see the new objects."""
        forget_clients()
        fresh = Services.from_settings(self.source_settings or self.settings)
        # The cached TurnService and quotas hold the old store, registry and table.
        self.__dict__.pop("turns", None)
        self.__dict__.pop("quotas", None)
        self.__dict__.update(fresh.__dict__)

    @classmethod
    def from_settings(cls, source: Settings) -> Services:
        settings = with_resolved_secrets(source)
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
        # One table for every record family: one client, one connection pool, one bound on calls in flight.
        table = Table(settings.chat_table, endpoint_url=settings.dynamodb_endpoint_url, region=settings.aws_region,
                      max_in_flight=settings.storage_threads)
        store = DynamoDBChatStore(table, retention_days=settings.retention_days,
                                  stale_after_seconds=settings.stale_after)
        wechat = None
        if settings.wechat_app_id:  # WeChat login and checks: imported only when configured
            from chatrelay.auth.wechat import wechat_api_from_settings

            wechat = wechat_api_from_settings(settings)
        safety = None
        if settings.content_safety != "off":  # imported only when on (off by default); checked at start-up
            from chatrelay.safety import content_safety_from_settings

            safety = content_safety_from_settings(settings, wechat)
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
            wechat=wechat,
            safety=safety,
            table=table,
            source_settings=source,
        )


async def get_services(request: Request) -> Services:
    # async: FastAPI would run a plain def dependency in a worker thread (api/security.py).
    return request.app.state.services
