"""Quota counters in the chat table, under the user's own partition.

    item (key in store/table.py)   attributes
    requests this minute           n, expiresAt
    tokens today                   tokens, expiresAt
    streams generating             leases {messageId: expiry}, expiresAt

Every change is one conditional ``UpdateItem``, so limits hold across any number
of Lambda instances without locks. Items carry a TTL and vanish on their own;
``DELETE /v1/me/data`` removes them with the rest of the user's partition.

Streams are counted as *leases*: a map from message id to the epoch second the
lease runs out. A stream takes one with ``SET leases.<mid> = :expiry`` under the
condition ``size(leases) < :cap`` and gives it back when its turn ends
(``REMOVE leases.<mid>``). The count is the map's size, so it cannot drift from
the leases, a double release is a no-op, and a retried request for a turn that
already holds a lease is recognised. A lease whose instance crashed is not lost:
when a stream is refused, expired leases are removed (one conditional write) and
the stream tries again. Expired leases are only looked at then, so the common
path is a single write.
"""

from __future__ import annotations

from enum import Enum

from chatrelay.store.table import Table, requests_per_minute_key, streams_key, tokens_per_day_key


class LeaseResult(str, Enum):
    ACQUIRED = "acquired"
    HELD = "held"
    """This message id already holds a lease (a retried request): nothing taken."""
    FULL = "full"


class QuotaStore:
    """Atomic counters in the chat table (sharing the chat store's client and worker threads)."""

    def __init__(self, table: Table) -> None:
        self._table = table

    # ---- requests per minute -----------------------------------------------

    async def count_request(self, user_id: str, window: str, *, limit: int, expires_at: int) -> bool:
        """Count one request in ``window``; False (nothing counted) when ``limit`` were already made."""
        return await self._table.conditional_update(
            requests_per_minute_key(user_id, window),
            "ADD n :one SET expiresAt = :exp",
            condition="attribute_not_exists(n) OR n < :limit",
            values={":one": 1, ":limit": limit, ":exp": expires_at},
        )

    async def uncount_request(self, user_id: str, window: str) -> None:
        """Take back one request counted in ``window`` (it was refused after all)."""
        await self._table.conditional_update(
            requests_per_minute_key(user_id, window), "ADD n :minus", condition="n > :zero",
            values={":minus": -1, ":zero": 0},
        )

    # ---- tokens per day ----------------------------------------------------

    async def tokens_used(self, user_id: str, day: str) -> int:
        item = await self._table.get(tokens_per_day_key(user_id, day), consistent=False) or {}
        return int(item.get("tokens", 0))

    async def add_tokens(self, user_id: str, day: str, tokens: int, *, expires_at: int) -> None:
        await self._table.update(
            tokens_per_day_key(user_id, day),
            "ADD tokens :n SET expiresAt = :exp",
            values={":n": tokens, ":exp": expires_at},
        )

    # ---- streams generating at once ------------------------------------------

    async def acquire_stream(
        self, user_id: str, message_id: str, *, cap: int, now: int, expires_at: int
    ) -> LeaseResult:
        key = streams_key(user_id)
        for _ in range(6):
            taken = await self._table.conditional_update(
                key,
                "SET leases.#m = :exp, expiresAt = :exp",
                condition="attribute_exists(leases) AND size(leases) < :cap AND attribute_not_exists(leases.#m)",
                names={"#m": message_id},
                values={":exp": expires_at, ":cap": cap},
            )
            if taken:
                return LeaseResult.ACQUIRED
            leases: dict[str, int] | None = (await self._table.get(key) or {}).get("leases")
            if leases is None:
                # First stream of this user (or the item expired): create the map with our lease.
                created = await self._table.conditional_update(
                    key,
                    "SET leases = :mine, expiresAt = :exp",
                    condition="attribute_not_exists(leases)",
                    values={":mine": {message_id: expires_at}, ":exp": expires_at},
                )
                if created:
                    return LeaseResult.ACQUIRED
                continue
            if message_id in leases:
                return LeaseResult.HELD
            expired = [mid for mid, until in leases.items() if int(until) <= now]
            if not expired:
                return LeaseResult.FULL
            # Leases of crashed instances: remove them (only if still there), then try again.
            names = {f"#e{i}": mid for i, mid in enumerate(expired)}
            await self._table.conditional_update(
                key,
                "REMOVE " + ", ".join(f"leases.{name}" for name in names),
                condition=" AND ".join(f"attribute_exists(leases.{name})" for name in names),
                names=names,
            )
        return LeaseResult.FULL

    async def release_stream(self, user_id: str, message_id: str) -> None:
        await self._table.conditional_update(
            streams_key(user_id),
            "REMOVE leases.#m",
            condition="attribute_exists(leases.#m)",
            names={"#m": message_id},
        )

    async def active_streams(self, user_id: str) -> dict[str, int]:
        """The leases held now, expired ones included (for tests and diagnostics)."""
        return (await self._table.get(streams_key(user_id)) or {}).get("leases") or {}
