"""The chat turn as a use case: admit it, check it, start it and hand back its event stream.

Every HTTP surface that starts or resumes a turn (``POST /v1/chat/stream``, its resume route)
calls :class:`TurnService`; the routes only parse, call and wrap the result in a response.
"""

from chatrelay.providers.base import ChatMessage
from chatrelay.turns.context import build_messages
from chatrelay.turns.service import TurnRequest, TurnService, TurnStream
from chatrelay.turns.validation import check_prompt

__all__ = ["ChatMessage", "TurnRequest", "TurnService", "TurnStream", "build_messages", "check_prompt"]
