"""Access tokens: signed JWTs (HS256) whose ``sub`` is the user id.

The user id a route acts for comes from here and nowhere else; a user id in a
request body is never read. Expiry, issuer and audience are all checked.

A token that verified is remembered (by its exact text, with its ``exp``) until it
expires, so the next request with it skips the decode, the HMAC and the claim checks,
which PyJWT spends tens of microseconds on before a turn's upstream request can be sent.
Nothing about a verified token but its expiry changes with time; an expired one is
checked (and refused) again.
"""

from __future__ import annotations

import re
import time

import jwt

from chatrelay import errors

USER_ID_PATTERN = re.compile(r"\A[A-Za-z0-9_.:@-]{1,128}\Z")
"""Use with ``fullmatch``. (``$`` would also match before a final newline: ``"user\\n"`` would pass.)"""
_ALGORITHM = "HS256"
_REMEMBERED = 10_000
"""Verified tokens kept at most (all are dropped when full: a bound, not an LRU)."""


class TokenService:
    def __init__(self, secret: str, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 characters")
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, tuple[str, float]] = {}
        """token -> (user id, exp) of tokens that verified."""

    def issue(self, user_id: str) -> str:
        if not USER_ID_PATTERN.fullmatch(user_id):
            raise errors.InvalidRequest("user id has invalid characters", field="userId")
        now = int(time.time())
        claims = {
            "sub": user_id,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "exp": now + self.ttl_seconds,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> str:
        """The token's user id; raises Unauthorized for anything not issued by us and current."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[1]:
                return known[0]
            del self._verified[token]
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise errors.Unauthorized("token expired") from exc
        except jwt.PyJWTError as exc:
            raise errors.Unauthorized("invalid token") from exc
        user_id = claims["sub"]
        if not isinstance(user_id, str) or not USER_ID_PATTERN.fullmatch(user_id):
            raise errors.Unauthorized("invalid token")
        if len(self._verified) >= _REMEMBERED:
            self._verified.clear()
        self._verified[token] = (user_id, float(claims["exp"]))
        return user_id
