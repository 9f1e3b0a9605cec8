"""Identity: who is calling, from a verified token only."""

from chatrelay.auth.tokens import TokenService

__all__ = ["TokenService"]
