"""``POST /v1/chat/completions``: the OpenAI chat completions contract over chatrelay's turns.

For clients built on the OpenAI SDKs (``api_key`` = a chatrelay access token). The turn goes
through the same admission, quotas, content check, limits, stop and persistence as
``/v1/chat/stream``; the model sees the messages the client sent (after the operator's system
prompt), and the last user message is the stored question. The conversation is named by the
``X-Conversation-Id`` header or ``metadata.conversation_id`` (a new one when absent) and comes
back in ``X-Conversation-Id`` / ``X-Message-Id``. Errors have OpenAI's shape (``app.py``).
"""

# No `from __future__ import annotations`: pydantic and FastAPI would evaluate each string annotation
# (a compile and an eval each) when the models and routes are built at start-up.

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from chatrelay import errors
from chatrelay.api import fast_route
from chatrelay.api.deferred_route import DeferredRoute
from chatrelay.api.lambda_context import request_deadline
from chatrelay.api.schemas import ID_PATTERN
from chatrelay.api.security import ServicesDep, UserId
from chatrelay.streaming.openai_chunks import Completion, completion_chunks, error_body
from chatrelay.streaming.response import SSE_HEADERS, event_stream_response
from chatrelay.turns import ChatMessage, TurnRequest

router = APIRouter(prefix="/v1", tags=["openai"], route_class=DeferredRoute)
PATH = "/v1/chat/completions"


class OpenAIError(BaseModel):
    # Like ErrorBody (schemas.py): documentation only, built with the OpenAPI schema.
    model_config = ConfigDict(defer_build=True)

    message: str
    type: str
    code: str | None = None
    param: str | None = None


class OpenAIErrorBody(BaseModel):
    """OpenAI's error shape, so the SDKs raise their usual exception classes."""

    model_config = ConfigDict(defer_build=True)

    error: OpenAIError


_ERRORS = {status: {"model": OpenAIErrorBody} for status in (401, 404, 413, 422, 429, 502, 503)}


class TextPart(BaseModel):
    # Built with its route, by the route's first request (api/deferred_route.py), not at start-up.
    model_config = ConfigDict(defer_build=True)

    type: Literal["text"]
    text: StrictStr


class InputMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(defer_build=True)

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The fields chatrelay uses; the others (temperature, tools, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    model: str | None = Field(None, max_length=64)
    messages: list[InputMessage] = Field(min_length=1, max_length=400)
    stream: bool = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, str] | None = None

    def to_turn_request(self, conversation_id: str | None) -> TurnRequest:
        *earlier, last = self.messages
        if last.role != "user":
            raise errors.InvalidRequest("the last message must be the user's question", field="messages")
        context = tuple(
            ChatMessage("system" if m.role in ("system", "developer") else m.role, m.text())  # type: ignore[arg-type]
            for m in earlier if m.role != "tool" and m.text()
        )
        return TurnRequest(prompt=last.text(), conversation_id=conversation_id, model=self.model, context=context)


def _conversation_id(header: str | None, body: ChatCompletionRequest) -> str | None:
    value = header or (body.metadata or {}).get("conversation_id")
    if value is not None and not ID_PATTERN.fullmatch(value):
        raise errors.InvalidRequest("conversation id must be 1-64 of [0-9A-Za-z_-]", field="conversationId")
    return value


async def chat_completions(
    request: Request,
    body: ChatCompletionRequest,
    user_id: UserId,
    services: ServicesDep,
    conversation_header: Annotated[str | None, Header(alias="X-Conversation-Id")] = None,
):
    turn_request = body.to_turn_request(_conversation_id(conversation_header, body))
    deadline = request_deadline(request, services.settings.lambda_deadline_margin)
    stream = await services.turns.start(user_id, turn_request, deadline=deadline)
    headers = {"X-Conversation-Id": stream.conversation_id, "X-Message-Id": stream.message_id}
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return event_stream_response(completion_chunks(stream.events, include_usage=include_usage),
                                     ping_interval=services.settings.ping_interval, headers=headers)
    completion = await Completion.gather(stream.events)
    if completion.error is not None:
        status = 500 if completion.error.code == errors.ChatRelayError.code else 502
        return JSONResponse(error_body(status, completion.error.code, completion.error.message), status_code=status,
                            headers=headers)
    return JSONResponse(completion.to_openai(), headers={**headers, "Cache-Control": SSE_HEADERS["Cache-Control"]})


_HEADERS = (b"authorization", b"content-type", b"x-conversation-id")


async def _chat_completions_fast(request: Request):
    """``chat_completions``' parameters read as FastAPI reads them (api/fast_route.py), or DECLINE."""
    plain = await fast_route.authorized_json(request, _HEADERS, ChatCompletionRequest)
    if plain is None:
        return fast_route.DECLINE
    found, user_id, body = plain
    return await chat_completions(request, body, user_id, request.app.state.services, found.get(b"x-conversation-id"))


router.add_api_route(
    "/chat/completions", chat_completions, methods=["POST"],
    responses={200: {"content": {"text/event-stream": {}, "application/json": {}},
                     "description": "chat.completion, or chat.completion.chunk SSE with stream=true"},
               **_ERRORS},
    route_class_override=fast_route.fast_route(_chat_completions_fast),
)
