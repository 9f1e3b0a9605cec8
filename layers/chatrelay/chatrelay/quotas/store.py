"""Quota counters in the chat table, under the user's own partition.

    item                   pk          sk                   attributes
    requests this minute   USER#<uid>  QUOTA#RPM#<yyyymmddHHMM>  n, expiresAt
    tokens today           USER#<uid>  QUOTA#TPD#<yyyy-mm-dd>    tokens, expiresAt
    streams generating     USER#<uid>  QUOTA#STREAMS             leases {messageId: expiry}, expiresAt

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
from typing import Any

from botocore.exceptions import ClientError

from chatrelay.store.dynamodb import DynamoDBChatStore, _deserialize, _serialize, _user_pk


def _conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class LeaseResult(str, Enum):
    ACQUIRED = "acquired"
    HELD = "held"
    """This message id already holds a lease (a retried request): nothing taken."""
    FULL = "full"


class QuotaStore:
    """Atomic counters for one table (the chat store's client and worker threads)."""

    def __init__(self, store: DynamoDBChatStore) -> None:
        self._store = store
        self._client = store.client
        self._table = store.table_name

    async def _update(self, user_id: str, sk: str, **kwargs: Any) -> bool:
        """A conditional update of ``(USER#uid, sk)``; False when its condition fails."""
        try:
            await self._store._call(
                self._client.update_item,
                TableName=self._table,
                Key=_serialize({"pk": _user_pk(user_id), "sk": sk}),
                **kwargs,
            )
        except ClientError as exc:
            if _conditional_failure(exc):
                return False
            raise
        return True

    async def _get(self, user_id: str, sk: str, *, consistent: bool) -> dict[str, Any]:
        response = await self._store._call(
            self._client.get_item,
            TableName=self._table,
            Key=_serialize({"pk": _user_pk(user_id), "sk": sk}),
            ConsistentRead=consistent,
        )
        return _deserialize(response.get("Item") or {})

    # ---- requests per minute -----------------------------------------------

    async def count_request(self, user_id: str, window: str, *, limit: int, expires_at: int) -> bool:
        """Count one request in ``window``; False (nothing counted) when ``limit`` were already made."""
        return await self._update(
            user_id,
            f"QUOTA#RPM#{window}",
            UpdateExpression="ADD n :one SET expiresAt = :exp",
            ConditionExpression="attribute_not_exists(n) OR n < :limit",
            ExpressionAttributeValues=_serialize({":one": 1, ":limit": limit, ":exp": expires_at}),
        )

    # ---- tokens per day ----------------------------------------------------

    async def tokens_used(self, user_id: str, day: str) -> int:
        item = await self._get(user_id, f"QUOTA#TPD#{day}", consistent=False)
        return int(item.get("tokens", 0))

    async def add_tokens(self, user_id: str, day: str, tokens: int, *, expires_at: int) -> None:
        await self._update(
            user_id,
            f"QUOTA#TPD#{day}",
            UpdateExpression="ADD tokens :n SET expiresAt = :exp",
            ExpressionAttributeValues=_serialize({":n": tokens, ":exp": expires_at}),
        )

    # ---- streams generating at once ------------------------------------------

    async def acquire_stream(
        self, user_id: str, message_id: str, *, cap: int, now: int, expires_at: int
    ) -> LeaseResult:
        sk = "QUOTA#STREAMS"
        for _ in range(6):
            taken = await self._update(
                user_id,
                sk,
                UpdateExpression="SET leases.#m = :exp, expiresAt = :exp",
                ConditionExpression=(
                    "attribute_exists(leases) AND size(leases) < :cap AND attribute_not_exists(leases.#m)"
                ),
                ExpressionAttributeNames={"#m": message_id},
                ExpressionAttributeValues=_serialize({":exp": expires_at, ":cap": cap}),
            )
            if taken:
                return LeaseResult.ACQUIRED
            leases: dict[str, int] | None = (await self._get(user_id, sk, consistent=True)).get("leases")
            if leases is None:
                # First stream of this user (or the item expired): create the map with our lease.
                created = await self._update(
                    user_id,
                    sk,
                    UpdateExpression="SET leases = :mine, expiresAt = :exp",
                    ConditionExpression="attribute_not_exists(leases)",
                    ExpressionAttributeValues=_serialize({":mine": {message_id: expires_at}, ":exp": expires_at}),
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
            await self._update(
                user_id,
                sk,
                UpdateExpression="REMOVE " + ", ".join(f"leases.{name}" for name in names),
                ConditionExpression=" AND ".join(f"attribute_exists(leases.{name})" for name in names),
                ExpressionAttributeNames=names,
            )
        return LeaseResult.FULL

    async def release_stream(self, user_id: str, message_id: str) -> None:
        await self._update(
            user_id,
            "QUOTA#STREAMS",
            UpdateExpression="REMOVE leases.#m",
            ConditionExpression="attribute_exists(leases.#m)",
            ExpressionAttributeNames={"#m": message_id},
        )

    async def active_streams(self, user_id: str) -> dict[str, int]:
        """The leases held now, expired ones included (for tests and diagnostics)."""
        return (await self._get(user_id, "QUOTA#STREAMS", consistent=True)).get("leases") or {}
