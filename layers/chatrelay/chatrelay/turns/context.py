"""What the model sees of a conversation: the system prompt, the latest turns that fit, the question."""

from __future__ import annotations

from collections.abc import Sequence

from chatrelay.providers.base import ChatMessage
from chatrelay.store.records import Turn, TurnStatus

# Turns whose answer the user saw to its end, or chose to end: worth showing the model again.
_CONTEXT_STATUSES = (TurnStatus.COMPLETE, TurnStatus.STOPPED, TurnStatus.TRUNCATED)


def build_messages(system_prompt: str, history: Sequence[Turn], prompt: str, max_chars: int) -> list[ChatMessage]:
    """System prompt, then as many of the latest turns as fit ``max_chars``, then the question."""
    kept: list[Turn] = []
    budget = max_chars - len(prompt)
    for turn in reversed(history):
        if not turn.answer or turn.status not in _CONTEXT_STATUSES:
            continue
        cost = len(turn.question) + len(turn.answer)
        if cost > budget:
            break
        budget -= cost
        kept.append(turn)
    messages = [ChatMessage("system", system_prompt)] if system_prompt else []
    for turn in reversed(kept):
        messages += [ChatMessage("user", turn.question), ChatMessage("assistant", turn.answer)]
    messages.append(ChatMessage("user", prompt))
    return messages


def client_messages(
    system_prompt: str, sent: Sequence[ChatMessage], prompt: str, *, max_chars: int, max_turns: int,
    allow_system: bool,
) -> list[ChatMessage]:
    """The messages a client sent (OpenAI contract), within the same limits as stored history.

    The operator's system prompt always comes first; the client's own ``system`` messages are
    dropped unless ``allow_system``. Of the earlier messages, the latest that fit ``max_chars``
    (and at most ``max_turns`` question-answer pairs) are kept, oldest first; the question last.
    """
    earlier = [m for m in sent if m.role != "system" or allow_system]
    kept: list[ChatMessage] = []
    budget = max_chars - len(prompt)
    for message in reversed(earlier):
        if len(message.content) > budget or len(kept) >= 2 * max_turns:
            break
        budget -= len(message.content)
        kept.append(message)
    head = [ChatMessage("system", system_prompt)] if system_prompt else []
    return [*head, *reversed(kept), ChatMessage("user", prompt)]
