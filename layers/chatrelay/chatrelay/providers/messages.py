"""Reshaping a chat history for vendors stricter than OpenAI.

Anthropic, Bedrock Converse and ERNIE v1 take the system prompt apart from the
messages, and want the messages to start with a user turn and alternate
user/assistant (ERNIE also wants an odd count, i.e. ending on the user's turn).
The relay already builds histories that way; these helpers make it a guarantee
instead of a coincidence.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatrelay.providers.base import ChatMessage


def split_system(messages: Sequence[ChatMessage]) -> tuple[str, list[ChatMessage]]:
    """The system prompt (system messages joined by a blank line) and the other messages."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    return system, [m for m in messages if m.role != "system"]


def alternating(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """User/assistant messages starting with a user turn, consecutive same-role ones merged."""
    merged: list[ChatMessage] = []
    for message in messages:
        if message.role == "system":
            continue
        if not merged and message.role != "user":
            continue  # a history may not open with an answer
        if merged and merged[-1].role == message.role:
            merged[-1] = ChatMessage(message.role, f"{merged[-1].content}\n\n{message.content}")
        else:
            merged.append(message)
    return merged
