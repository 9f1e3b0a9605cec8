"""The AI SDK's chat protocol (``useChat`` with ``DefaultChatTransport({api: '/v1/ui/chat'})``).

``POST /v1/ui/chat``: ``{id, messages: [UIMessage], trigger, messageId}``. The chat ``id`` names
a conversation within the caller's own keys (created on first use). The server's stored history
is the context: only the last user message of the request is new, so a client cannot rewrite
what the model said before. ``trigger: "regenerate-message"`` answers the last stored question
again as a new turn (the earlier answer stays in the history; the model does not see it).
``GET /v1/ui/chat/{id}/stream``: the AI SDK's resume request: the running turn replayed from
its start and followed, or 204 when nothing is running. The answer's UIMessage id is chatrelay's
message id, so ``POST /v1/messages/{id}/stop`` stops it.
"""

# No `from __future__ import annotations`: pydantic and FastAPI would evaluate each string annotation
# (a compile and an eval each) when the models and routes are built at start-up.

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from chatrelay import errors
from chatrelay.api.deferred_route import DeferredRoute
from chatrelay.api.lambda_context import request_deadline
from chatrelay.api.schemas import ErrorBody, Id
from chatrelay.api.security import ServicesDep, UserId
from chatrelay.streaming.response import event_stream_response
from chatrelay.streaming.ui_messages import HEADERS, ui_message_chunks
from chatrelay.turns import TurnRequest, TurnStream

router = APIRouter(prefix="/v1/ui", tags=["ai-sdk"], route_class=DeferredRoute)


class UIPart(BaseModel):
    # Built with its route, by the route's first request (api/deferred_route.py), not at start-up.
    model_config = ConfigDict(extra="ignore", defer_build=True)

    type: str = Field(max_length=64)
    text: StrictStr | None = None


class UIMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    id: str = Field("", max_length=128)
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart] = Field(default_factory=list, max_length=200)

    def text(self) -> str:
        return "".join(part.text or "" for part in self.parts if part.type == "text")


class UIChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    id: Id
    messages: list[UIMessage] = Field(min_length=1, max_length=400)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: str | None = Field(None, alias="messageId", max_length=128)
    model: str | None = Field(None, max_length=64)

    def to_turn_request(self) -> TurnRequest:
        if self.trigger == "regenerate-message":
            return TurnRequest(prompt="", conversation_id=self.id, model=self.model, regenerate=True)
        last = self.messages[-1]
        if last.role != "user":
            raise errors.InvalidRequest("the last message must be the user's question", field="messages")
        return TurnRequest(prompt=last.text(), conversation_id=self.id, model=self.model, create_conversation=True)


def _response(stream: TurnStream, services) -> Response:
    headers = {**HEADERS, "X-Conversation-Id": stream.conversation_id, "X-Message-Id": stream.message_id}
    return event_stream_response(ui_message_chunks(stream.events), ping_interval=services.settings.ping_interval,
                                 headers=headers)


_ERRORS = {status: {"model": ErrorBody} for status in (401, 404, 413, 422, 429, 503)}


@router.post("/chat", responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS})
async def ui_chat(request: Request, body: UIChatRequest, user_id: UserId, services: ServicesDep):
    deadline = request_deadline(request, services.settings.lambda_deadline_margin)
    stream = await services.turns.start(user_id, body.to_turn_request(), deadline=deadline)
    return _response(stream, services)


@router.get("/chat/{chat_id}/stream", responses={200: {"content": {"text/event-stream": {}}},
                                                  204: {"description": "nothing is running"},
                                                  401: {"model": ErrorBody}})
async def ui_chat_resume(
    chat_id: Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,64}$")], user_id: UserId, services: ServicesDep
):
    stream = await services.turns.running(user_id, chat_id)
    return Response(status_code=204) if stream is None else _response(stream, services)
