"""The service's error tree. Every failure a client can see has a stable ``code``.

    ChatRelayError                       code                 HTTP
    ├── RequestError
    │   ├── InvalidRequest               invalid_request      422
    │   │   └── ConversationTooLong      conversation_too_long 422
    │   ├── UnknownModel                 unknown_model        422
    │   ├── Unauthorized                 unauthorized         401
    │   │   ├── RefreshTokenInvalid      refresh_token_invalid 401
    │   │   └── WeChatCodeInvalid        wechat_code_invalid  401
    │   ├── WeChatUserBlocked            wechat_user_blocked  403
    │   ├── NotFound                     not_found            404
    │   ├── RequestTimeout               request_timeout      408 (the body did not arrive in time)
    │   ├── PayloadTooLarge              payload_too_large    413
    │   └── TooManyRequests              (see below)          429, with Retry-After
    │       ├── RateLimited              rate_limited         (requests per minute)
    │       ├── TokenQuotaExceeded       token_quota_exceeded (tokens per day)
    │       ├── TooManyStreams           too_many_streams     (answers generating at once)
    │       └── WeChatRateLimited        wechat_rate_limited  (WeChat errcode 45011)
    ├── StorageError                     storage_unavailable  503
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

Codes that only appear in ``event: error`` of a stream: ``answer_too_long`` and
``answer_time_limit`` (hard caps reached; the partial answer is kept),
``not_saved`` (the answer could not be stored), ``question_blocked`` (the content
check refused the question; the turn is stored ``blocked``, the model never asked) and
``answer_blocked`` (the content check refused part of the answer). ``interrupted`` is the error code a
turn gets when the stream generating it vanished (a crashed instance). ``internal_error`` (500) is the
catch-all. Lower libraries' exceptions (httpx, botocore) are translated into this
tree at the module that calls them, never let through.
"""

from __future__ import annotations


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


class StorageError(ChatRelayError):
    """Chat storage is unavailable; try again."""

    code = "storage_unavailable"
    status_code = 503


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


class TooManyRequests(RequestError):
    """Too many requests; try again later."""

    code = "rate_limited"
    status_code = 429

    def __init__(self, message: str | None = None, *, retry_after: int = 1, **details: object) -> None:
        super().__init__(message, retryAfter=max(1, int(retry_after)), **details)
        self.retry_after = max(1, int(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


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
