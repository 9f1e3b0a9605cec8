"""Refresh-token families in the chat table: what ``auth/refresh.py`` keeps between logins.

One item per family (key ``refresh_token_key``): ``tokenHash``, the hash of the
family's current token (never the token), rotated by one conditional write per
use; ``expiresAt`` (TTL) moves with each rotation.
"""

from __future__ import annotations

import time

from chatrelay.store.records import utc_now
from chatrelay.store.table import Table, refresh_token_key


class RefreshTokenStore:
    def __init__(self, table: Table) -> None:
        self._table = table

    async def create_family(self, user_id: str, family: str, token_hash: str, expires_at: int) -> None:
        now = utc_now()
        await self._table.update(
            refresh_token_key(user_id, family),
            "SET #type = :type, tokenHash = :h, createdAt = :now, rotatedAt = :now, expiresAt = :exp",
            condition="attribute_not_exists(pk)",
            names={"#type": "type"},
            values={":type": "refresh", ":h": token_hash, ":now": now, ":exp": expires_at},
        )

    async def rotate_family(self, user_id: str, family: str, *, old_hash: str, new_hash: str, expires_at: int) -> bool:
        """Replace the family's current token; False when ``old_hash`` is not current or has expired."""
        return await self._table.conditional_update(
            refresh_token_key(user_id, family),
            "SET tokenHash = :new, rotatedAt = :now, expiresAt = :exp",
            condition="tokenHash = :old AND expiresAt > :epoch",
            values={":new": new_hash, ":old": old_hash, ":now": utc_now(), ":exp": expires_at,
                    ":epoch": int(time.time())},
        )

    async def delete_family(self, user_id: str, family: str) -> None:
        await self._table.batch_delete([refresh_token_key(user_id, family)])
