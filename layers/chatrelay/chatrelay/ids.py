"""Identifiers: time-ordered ULIDs for new records, and stable ids for retried requests."""

from __future__ import annotations

import hashlib
import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A 26-character ULID: 48 bits of milliseconds, then 80 random bits."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, rest = divmod(value, 32)
        chars.append(_CROCKFORD[rest])
    return "".join(reversed(chars))


def message_id_for_request(user_id: str, request_id: str) -> str:
    """The message id a retried request maps to, so a retry finds the first attempt's turn."""
    digest = hashlib.sha256(f"{user_id}\0{request_id}".encode()).hexdigest()
    return "R" + digest[:25].upper()
