"""Chat records, the store interface, and their storage in the chat table.

Only the light names are exported here; the back ends (which need the DynamoDB client) are
imported from their own modules.
"""

from chatrelay.store.base import TurnStore
from chatrelay.store.records import Conversation, Page, Turn, TurnStart, TurnStatus

__all__ = ["Conversation", "Page", "Turn", "TurnStart", "TurnStatus", "TurnStore"]
