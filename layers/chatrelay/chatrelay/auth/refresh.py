"""Refresh tokens: opaque, rotated on every use, stored only as a hash.

A refresh token is ``<user>.<family>.<secret>``: the user id (base64url, so the
store can address the user's partition), a random family id and a random secret.
Logging in starts a family; ``POST /v1/auth/refresh`` trades the family's current
token for a new one (one conditional write: "the stored hash is this token's and
it has not expired"). A token that is not the family's current one — already
rotated, so a copy is being replayed — revokes the whole family: whoever holds a
stolen token and the rightful client both end up logging in again, which in a
mini-program is a silent ``wx.login()``. Tokens never appear in logs.

One item per family, not per token, so rotation costs one write and nothing piles
up; the TTL of the item moves with each rotation (``refresh_token_ttl_seconds``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time

import msgspec

from chatrelay import errors
from chatrelay.auth.tokens import USER_ID_PATTERN
from chatrelay.observability import hash_user_id, logger
from chatrelay.store.refresh_tokens import RefreshTokenStore


class _Parsed(msgspec.Struct, frozen=True):
    user_id: str
    family: str
    secret: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _encode_user(user_id: str) -> str:
    return base64.urlsafe_b64encode(user_id.encode()).decode().rstrip("=")


def _parse(token: str) -> _Parsed:
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise errors.RefreshTokenInvalid()
    encoded, family, secret = parts
    try:
        user_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, ValueError) as exc:
        raise errors.RefreshTokenInvalid() from exc
    if not USER_ID_PATTERN.fullmatch(user_id) or len(family) > 64 or len(secret) > 128:
        raise errors.RefreshTokenInvalid()
    return _Parsed(user_id, family, secret)


class RefreshTokens:
    def __init__(self, families: RefreshTokenStore, *, ttl_seconds: int) -> None:
        self._families = families
        self.ttl_seconds = ttl_seconds

    def _expiry(self) -> int:
        return int(time.time()) + self.ttl_seconds

    async def issue(self, user_id: str) -> str:
        """Start a new family for ``user_id`` (a login) and return its first token."""
        family, secret = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
        await self._families.create_family(user_id, family, _hash(secret), self._expiry())
        return f"{_encode_user(user_id)}.{family}.{secret}"

    async def rotate(self, token: str) -> tuple[str, str]:
        """Trade a current token for the next one: ``(user_id, new_token)``.

        Raises RefreshTokenInvalid for anything else; a replayed (already rotated)
        or expired token also deletes its family.
        """
        parsed = _parse(token)
        secret = secrets.token_urlsafe(32)
        rotated = await self._families.rotate_family(
            parsed.user_id, parsed.family, old_hash=_hash(parsed.secret), new_hash=_hash(secret),
            expires_at=self._expiry(),
        )
        if not rotated:
            # Unknown, expired, or not the current token of its family (reuse): end the family.
            await self._families.delete_family(parsed.user_id, parsed.family)
            logger.warning("refresh token refused; family revoked", extra={"user": hash_user_id(parsed.user_id)})
            raise errors.RefreshTokenInvalid()
        return parsed.user_id, f"{_encode_user(parsed.user_id)}.{parsed.family}.{secret}"
