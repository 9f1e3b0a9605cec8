"""Request and response bodies of the HTTP API (pydantic)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from chatrelay.turns import TurnRequest

Id = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")]


class ChatStreamRequest(BaseModel):
    """``POST /v1/chat/stream``. Unknown fields (such as a client-sent ``userId``) are ignored."""

    model_config = ConfigDict(populate_by_name=True, coerce_numbers_to_str=True, extra="ignore")

    prompt: str = Field(min_length=1, description="The user's question (rules: chatrelay/turns/validation.py).")
    conversation_id: Id | None = Field(None, alias="conversationId", description="Absent: a new conversation.")
    model: str | None = Field(
        None,
        validation_alias=AliasChoices("model", "largeModel"),
        max_length=64,
        description="A configured preset name (see GET /v1/models); `largeModel` is accepted as an alias.",
    )
    request_id: str | None = Field(
        None, alias="requestId", pattern=r"^[\x21-\x7e]{1,128}$", description="Idempotency key."
    )
    terminal: str | None = Field(None, max_length=64)
    window: str | None = Field(None, max_length=64)

    def to_turn_request(self) -> TurnRequest:
        return TurnRequest(prompt=self.prompt, conversation_id=self.conversation_id, model=self.model,
                           request_id=self.request_id, terminal=self.terminal, window=self.window)


class DevLoginRequest(BaseModel):
    user_id: str = Field(alias="userId", pattern=r"^[A-Za-z0-9_.:@-]{1,128}$")


class FeedbackRequest(BaseModel):
    useful: Literal[-1, 0, 1]


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None
