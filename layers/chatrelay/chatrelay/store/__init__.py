"""Chat records and their storage in the chat table (the back ends import botocore; this does not)."""

from chatrelay.store.records import Conversation, Page, Turn, TurnStart, TurnStatus

__all__ = ["Conversation", "Page", "Turn", "TurnStart", "TurnStatus"]
