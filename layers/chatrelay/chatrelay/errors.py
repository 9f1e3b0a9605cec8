"""The service's error tree. Every failure a client can see has a stable ``code``.

    ChatRelayError                       code                 HTTP
    ├── RequestError
    │   ├── InvalidRequest               invalid_request      422
    │   │   ├── ConversationTooLong      conversation_too_long 422
    │   │   └── InvalidCursor            invalid_request      422 (a cursor the listing did not give)
    │   ├── UnknownModel                 unknown_model        422
    │   ├── Unauthorized                 unauthorized         401
    │   │   ├── RefreshTokenInvalid      refresh_token_invalid 401
    │   │   └── WeChatCodeInvalid        wechat_code_invalid  401
    │   ├── WeChatUserBlocked            wechat_user_blocked  403
    │   ├── NotFound                     not_found            404
    │   │   ├── ConversationNotFound     not_found            (not one of the caller's conversations)
    │   │   └── MessageNotFound          not_found            (not one of the caller's messages)
    │   ├── RequestTimeout               request_timeout      408 (the body did not arrive in time)
    │   ├── PayloadTooLarge              payload_too_large    413
    │   └── TooManyRequests              (see below)          429, with Retry-After
    │       ├── RateLimited              rate_limited         (requests per minute)
    │       ├── TokenQuotaExceeded       token_quota_exceeded (tokens per day)
    │       ├── TooManyStreams           too_many_streams     (answers generating at once)
    │       ├── TooManyResumes           too_many_resumes     (streams following one answer, or one user's)
    │       └── WeChatRateLimited        wechat_rate_limited  (WeChat errcode 45011)
    ├── StorageError                     storage_unavailable  503
    ├── Overloaded                       overloaded           503 (this process's stream cap), with Retry-After
    │   └── TransactionCanceled          storage_unavailable  (DynamoDB refused a transaction; ``reasons`` say why)
    ├── ConditionFailed                  internal_error       500 (a conditional write found its condition false)
    ├── ContentCheckUnavailable          content_check_unavailable 503 (fail-closed checker down)
    ├── WeChatError                      wechat_error         502 (unexpected WeChat answer)
    │   └── WeChatBusy                   wechat_busy          503 (errcode -1), with Retry-After
    └── UpstreamError                    (see below)          502
        ├── UpstreamUnavailable          upstream_unavailable
        ├── UpstreamRateLimited          upstream_rate_limited
        ├── UpstreamAuthError            upstream_auth_failed
        ├── UpstreamHTTPError            upstream_error
        ├── UpstreamTimeout              upstream_timeout
        ├── UpstreamDisconnected         upstream_disconnected
        └── UpstreamProtocolError        upstream_bad_response

Codes that only appear in ``event: error`` of a stream (the response is already 200), with
the message each carries, are in ``STREAM_ERRORS`` below: ``question_blocked`` (the content
check refused the question; the turn is stored ``blocked``, the model never asked),
``answer_blocked`` (the content check refused part of the answer; the event carries the safe
``offset``), ``not_saved`` (the answer could not be stored), ``interrupted`` (the error code a
turn gets when the stream generating it vanished: a crashed instance), ``not_found`` (the turn
was deleted while being followed) and ``internal_error``. An upstream failure mid-stream
reaches the client as ``event: error`` with the ``Upstream*`` code above. Hard caps (answer
length, duration, the Lambda deadline) are not errors: the stream ends with ``done`` and
``finishReason`` ``length_cap``, ``time_cap`` or ``lambda_timeout``. ``internal_error`` (500) is
also the HTTP catch-all. Lower libraries' exceptions (httpx, the AWS client) are translated into this
tree at the one module that calls each library, never let through.

The store's errors name no API field: it does not know which part of a request a
value came from. The route (or the turn service) that read the value names it
(``naming_field``), so a client still learns which field to fix. ``ConditionFailed`` and
``TransactionCanceled`` are what the store hears from DynamoDB; the store decides
what they mean (a duplicate, a missing conversation, a refused counter), and one
that reaches a client is a bug (500) or an outage (503). DynamoDB's errors (``chatrelay.aws``,
or botocore's when a botocore client is injected) are translated in one place,
``store/table.py``; httpx's in ``providers/http.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager


class ChatRelayError(Exception):
    code = "internal_error"
    status_code = 500

    def __init__(self, message: str | None = None, **details: object) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        self.details = details

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        body.update({k: v for k, v in self.details.items() if v is not None})
        return body


class RequestError(ChatRelayError):
    status_code = 400


class InvalidRequest(RequestError):
    """The request is not valid."""

    code = "invalid_request"
    status_code = 422


class UnknownModel(RequestError):
    """No such model is configured."""

    code = "unknown_model"
    status_code = 422


class Unauthorized(RequestError):
    """A valid bearer token is required."""

    code = "unauthorized"
    status_code = 401


class NotFound(RequestError):
    """No such resource."""

    code = "not_found"
    status_code = 404


class ConversationNotFound(NotFound):
    """conversation not found"""


class MessageNotFound(NotFound):
    """message not found"""


class StorageError(ChatRelayError):
    """Chat storage is unavailable; try again."""

    code = "storage_unavailable"
    status_code = 503


class TransactionCanceled(StorageError):
    """Chat storage refused a transaction; try again."""

    def __init__(self, message: str | None = None, *, reasons: tuple[str | None, ...] = (), **details: object) -> None:
        super().__init__(message, **details)
        # One code per item of the transaction, in order: "ConditionalCheckFailed" where its condition failed.
        self.reasons = reasons


class ConditionFailed(ChatRelayError):
    """A conditional write found its condition false."""


class UpstreamError(ChatRelayError):
    """The model provider failed."""

    code = "upstream_error"
    status_code = 502
    retryable = False

    def __init__(self, message: str | None = None, *, status: int | None = None, **details: object) -> None:
        super().__init__(message, **details)
        self.status = status


class UpstreamUnavailable(UpstreamError):
    """The model provider could not be reached."""

    code = "upstream_unavailable"
    retryable = True


class UpstreamRateLimited(UpstreamError):
    """The model provider is rate limiting requests."""

    code = "upstream_rate_limited"
    retryable = True


class UpstreamAuthError(UpstreamError):
    """The model provider refused our credentials."""

    code = "upstream_auth_failed"


class UpstreamHTTPError(UpstreamError):
    """The model provider answered with an error."""

    code = "upstream_error"

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status is not None and self.status >= 500


class UpstreamTimeout(UpstreamError):
    """The model provider did not answer in time."""

    code = "upstream_timeout"
    retryable = True


class UpstreamDisconnected(UpstreamError):
    """The model provider closed the stream before the answer ended."""

    code = "upstream_disconnected"


class UpstreamProtocolError(UpstreamError):
    """The model provider sent something that is not a valid stream."""

    code = "upstream_bad_response"


class ConversationTooLong(InvalidRequest):
    """The conversation has reached its maximum number of turns; start a new one."""

    code = "conversation_too_long"


class InvalidCursor(InvalidRequest):
    """cursor is not valid for this listing"""


class RefreshTokenInvalid(Unauthorized):
    """The refresh token is unknown, expired, revoked or was already used; log in again."""

    code = "refresh_token_invalid"


class WeChatCodeInvalid(Unauthorized):
    """The wx.login code is invalid, expired or already used; call wx.login again."""

    code = "wechat_code_invalid"


class WeChatUserBlocked(RequestError):
    """WeChat flags this user as high-risk; login refused."""

    code = "wechat_user_blocked"
    status_code = 403


class RequestTimeout(RequestError):
    """The request body did not arrive in time."""

    code = "request_timeout"
    status_code = 408


class PayloadTooLarge(RequestError):
    """The request body is too large."""

    code = "payload_too_large"
    status_code = 413


class RetryLater:
    """Mixin: the answer says when to try again (``retryAfter`` in the body, ``Retry-After`` header)."""

    retry_after = 1

    def __init__(self, message: str | None = None, *, retry_after: int | None = None, **details: object) -> None:
        self.retry_after = max(1, int(self.retry_after if retry_after is None else retry_after))
        super().__init__(message, retryAfter=self.retry_after, **details)  # type: ignore[call-arg]

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManyRequests(RetryLater, RequestError):
    """Too many requests; try again later."""

    code = "rate_limited"
    status_code = 429


class RateLimited(TooManyRequests):
    """Too many requests this minute; try again later."""

    code = "rate_limited"


class TokenQuotaExceeded(TooManyRequests):
    """Today's token quota is used up."""

    code = "token_quota_exceeded"


class TooManyStreams(TooManyRequests):
    """Too many answers are being generated at once; wait for one to finish or stop it."""

    code = "too_many_streams"


class WeChatRateLimited(TooManyRequests):
    """WeChat is rate limiting logins; try again later."""

    code = "wechat_rate_limited"


class ContentCheckUnavailable(ChatRelayError):
    """The content check could not be run; try again later."""

    code = "content_check_unavailable"
    status_code = 503


class WeChatError(ChatRelayError):
    """The WeChat server API failed."""

    code = "wechat_error"
    status_code = 502

    def __init__(self, message: str | None = None, *, errcode: int | None = None, **details: object) -> None:
        super().__init__(message, **details)
        self.errcode = errcode


class WeChatBusy(WeChatError):
    """WeChat is busy; try again in a moment."""

    code = "wechat_busy"
    status_code = 503
    retry_after = 2

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


@contextmanager
def naming_field(field: str, *kinds: type[ChatRelayError]) -> Iterator[None]:
    """Raise errors of ``kinds`` again, naming the request ``field`` whose value they concern."""
    try:
        yield
    except kinds as exc:
        named = copy.copy(exc)
        named.details = {**exc.details, "field": field}
        raise named from exc


class TooManyResumes(TooManyRequests):
    """Too many streams are following this answer (or your answers) at once; close one first."""

    code = "too_many_resumes"


class Overloaded(RetryLater, ChatRelayError):
    """This server is at its capacity of answers at once; try again shortly."""

    code = "overloaded"
    status_code = 503
    retry_after = 2


# Codes and messages of failures that reach the client only inside a stream (``event: error``).
QUESTION_BLOCKED = "question_blocked"
ANSWER_BLOCKED = "answer_blocked"
NOT_SAVED = "not_saved"
INTERRUPTED = "interrupted"
ANSWER_FAILED = "the answer failed"
STREAM_ERRORS: dict[str, str] = {
    QUESTION_BLOCKED: "the question was refused by the content check",
    ANSWER_BLOCKED: "part of the answer was refused by the content check",
    NOT_SAVED: "the answer could not be saved",
    INTERRUPTED: ANSWER_FAILED,
    ChatRelayError.code: ANSWER_FAILED,
}
# What a follower (resume, a retried requestId) says when the turn it follows ends badly.
FOLLOW_TIMEOUT = "the answer is taking too long; try again later"
FOLLOWED_TURN_DELETED = "the message was deleted"
