"""Chat records: conversations and turns."""

from chatrelay.store.dynamodb import DynamoDBChatStore
from chatrelay.store.records import Conversation, Page, Turn, TurnStart, TurnStatus

__all__ = ["Conversation", "DynamoDBChatStore", "Page", "Turn", "TurnStart", "TurnStatus"]
