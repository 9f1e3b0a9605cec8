"""Request and response bodies of the HTTP API (pydantic)."""

# No `from __future__ import annotations`: pydantic and FastAPI would evaluate each string annotation
# (a compile and an eval each) when the models and routes are built at start-up.

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

if TYPE_CHECKING:
    from chatrelay.turns import TurnRequest

ID_PATTERN = re.compile(r"[0-9A-Za-z_-]{1,64}")
Id = Annotated[str, Field(pattern=rf"^{ID_PATTERN.pattern}$")]


def _number_as_text(value: object) -> object:
    # Legacy clients send terminal/window as numbers (``"window": 3``); other types stay wrong.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# A client label (``terminal``, ``window``): stored and shown in logs, so no control characters.
Label = Annotated[str, BeforeValidator(_number_as_text), Field(max_length=64, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")]


class ChatStreamRequest(BaseModel):
    """``POST /v1/chat/stream``. Unknown fields (such as a client-sent ``userId``) are ignored."""

    # Built with its route, by the route's first request (api/deferred_route.py), not at start-up.
    model_config = ConfigDict(populate_by_name=True, extra="ignore", defer_build=True)

    prompt: StrictStr = Field(min_length=1, description="The user's question (rules: chatrelay/turns/validation.py).")
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
    user_code: str | None = Field(
        None, alias="userCode", max_length=256,
        description="Sent by the legacy H5 client; never an identity (that is the token's). Its presence picks "
                    "the legacy newline marker in format=text.",
    )
    terminal: Label | None = None
    window: Label | None = None

    def to_turn_request(self) -> "TurnRequest":
        # Imported here: the buffered API function imports this module but starts no turn.
        from chatrelay.turns import TurnRequest

        return TurnRequest(prompt=self.prompt, conversation_id=self.conversation_id, model=self.model,
                           request_id=self.request_id, terminal=self.terminal, window=self.window)


class DevLoginRequest(BaseModel):
    model_config = ConfigDict(defer_build=True)

    user_id: str = Field(alias="userId", pattern=r"^[A-Za-z0-9_.:@-]{1,128}$")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(defer_build=True)

    useful: Literal[-1, 0, 1]


class ErrorBody(BaseModel):
    # For the OpenAPI schema only (app.py writes the bodies): deferred, it is built when the schema
    # is first generated, not at start-up for each route's `responses` entry (58 of them).
    model_config = ConfigDict(defer_build=True)

    code: str
    message: str
    field: str | None = None
