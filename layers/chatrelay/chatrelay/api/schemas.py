"""Request and response bodies of the HTTP API (pydantic)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

Id = Annotated[str, Field(pattern=r"^[0-9A-Za-z_-]{1,64}$")]


class ChatStreamRequest(BaseModel):
    """``POST /v1/chat/stream``. Unknown fields (such as a client-sent ``userId``) are ignored."""

    model_config = ConfigDict(populate_by_name=True, coerce_numbers_to_str=True, extra="ignore")

    prompt: str = Field(min_length=1, description="The user's question.")
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

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value


class DevLoginRequest(BaseModel):
    user_id: str = Field(alias="userId", pattern=r"^[A-Za-z0-9_.:@-]{1,128}$")


class TokenResponse(BaseModel):
    token: str
    token_type: Literal["Bearer"] = Field("Bearer", serialization_alias="tokenType")
    expires_in: int = Field(serialization_alias="expiresIn")


class FeedbackRequest(BaseModel):
    useful: Literal[-1, 0, 1]


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class PageResponse(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(None, serialization_alias="nextCursor")
