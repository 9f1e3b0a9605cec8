"""``POST /v1/chat/stream``: start a turn and relay its answer as SSE; ``GET /v1/messages/{id}/stream``: resume it.

HTTP only: parse, call :class:`chatrelay.turns.TurnService`, wrap its stream in the response.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request

from chatrelay import errors
from chatrelay.api import fast_route
from chatrelay.api.deferred_route import DeferredRoute
from chatrelay.api.lambda_context import request_deadline
from chatrelay.api.schemas import ChatStreamRequest, ErrorBody
from chatrelay.api.security import ServicesDep, UserId
from chatrelay.api.services import Services
from chatrelay.streaming.response import NewlineStyle, StreamFormat, sse_response
from chatrelay.turns import TurnStream

router = APIRouter(prefix="/v1", tags=["chat"], route_class=DeferredRoute)

_ERRORS = {
    401: {"model": ErrorBody},
    404: {"model": ErrorBody, "description": "conversationId is not one of yours"},
    422: {"model": ErrorBody},
}
_CHAT_ERRORS = {
    **_ERRORS,
    413: {"model": ErrorBody, "description": "payload_too_large"},
    429: {"model": ErrorBody, "description": "rate_limited, token_quota_exceeded or too_many_streams (Retry-After)"},
    503: {"model": ErrorBody, "description": "storage_unavailable or content_check_unavailable"},
}
FormatQuery = Annotated[
    Literal["json", "text"], Query(description="`text`: raw text deltas for `answer += e.data`.")
]
NewlinesQuery = Annotated[
    Literal["lines", "marker"] | None,
    Query(description="format=text: `marker` sends line breaks as `(@n@)` / `(@r@)` (legacy H5 clients on "
                      "fetch-event-source). Default: `marker` when the body has the legacy `userCode`, else `lines`."),
]
# An answer offset: ASCII digits only (str.isdigit() accepts "²"), and short enough for int().
_OFFSET = re.compile(r"[0-9]{1,12}")


def _response(stream: TurnStream, fmt: StreamFormat, services: Services, newlines: NewlineStyle = "lines"):
    headers = {"X-Conversation-Id": stream.conversation_id, "X-Message-Id": stream.message_id}
    return sse_response(stream.events, fmt=fmt, newlines=newlines, ping_interval=services.settings.ping_interval,
                        headers=headers)


async def chat_stream(
    request: Request, body: ChatStreamRequest, user_id: UserId, services: ServicesDep, format: FormatQuery = "json",
    newlines: NewlinesQuery = None,
):
    deadline = request_deadline(request, services.settings.lambda_deadline_margin)
    stream = await services.turns.start(user_id, body.to_turn_request(), deadline=deadline)
    # The legacy client (the one that sends userCode) replaces "(@n@)" with newlines.
    style = newlines or ("marker" if body.user_code is not None else "lines")
    return _response(stream, format, services, style)


_CHAT_STREAM_HEADERS = (b"authorization", b"content-type")


async def _chat_stream_fast(request: Request):
    """``chat_stream``'s parameters read as FastAPI reads them (api/fast_route.py), or DECLINE."""
    fmt = fast_route.query_choice(request, "format", ("json", "text"), "json")
    newlines = fast_route.query_choice(request, "newlines", ("lines", "marker"), None)
    if fmt is fast_route.DECLINE or newlines is fast_route.DECLINE:
        return fast_route.DECLINE
    plain = await fast_route.authorized_json(request, _CHAT_STREAM_HEADERS, ChatStreamRequest)
    if plain is None:
        return fast_route.DECLINE
    _, user_id, body = plain
    return await chat_stream(request, body, user_id, request.app.state.services, fmt, newlines)


router.add_api_route(
    "/chat/stream", chat_stream, methods=["POST"],
    responses={200: {"content": {"text/event-stream": {}}, "description": "The answer as SSE."}, **_CHAT_ERRORS},
    route_class_override=fast_route.fast_route(_chat_stream_fast),
)


@router.get(
    "/messages/{message_id}/stream",
    responses={200: {"content": {"text/event-stream": {}}, "description": "The answer from the offset on."},
               **_ERRORS},
)
async def resume_stream(
    message_id: Annotated[str, Path(pattern=r"^[0-9A-Za-z_-]{1,64}$")],
    user_id: UserId,
    services: ServicesDep,
    after: Annotated[int | None, Query(ge=0, description="Answer offset already received.")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    format: FormatQuery = "json",
    newlines: NewlinesQuery = None,
):
    """Resume a turn after a dropped connection: the answer from ``Last-Event-ID`` (or
    ``after``) on, then, while the turn is still being generated (by any instance),
    its new text as it is checkpointed, until it ends."""
    offset = after
    if offset is None and last_event_id:
        if not _OFFSET.fullmatch(last_event_id):
            raise errors.InvalidRequest("Last-Event-ID must be an answer offset", field="Last-Event-ID")
        offset = int(last_event_id)
    stream = await services.turns.resume(user_id, message_id, after=offset or 0)
    return _response(stream, format, services, newlines or "lines")
