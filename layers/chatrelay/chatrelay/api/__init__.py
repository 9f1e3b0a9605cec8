"""The HTTP API."""

from chatrelay.api.app import create_app

__all__ = ["create_app"]
