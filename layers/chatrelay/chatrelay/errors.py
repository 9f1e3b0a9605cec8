"""The service's error tree. Every failure a client can see has a stable ``code``.

    ChatRelayError                       code                 HTTP
    ├── RequestError
    │   ├── InvalidRequest               invalid_request      422
    │   ├── UnknownModel                 unknown_model        422
    │   ├── Unauthorized                 unauthorized         401
    │   └── NotFound                     not_found            404
    ├── StorageError                     storage_unavailable  503
    └── UpstreamError                    (see below)          502
        ├── UpstreamUnavailable          upstream_unavailable
        ├── UpstreamRateLimited          upstream_rate_limited
        ├── UpstreamAuthError            upstream_auth_failed
        ├── UpstreamHTTPError            upstream_error
        ├── UpstreamTimeout              upstream_timeout
        ├── UpstreamDisconnected         upstream_disconnected
        └── UpstreamProtocolError        upstream_bad_response

Codes that only appear in ``event: error`` of a stream: ``answer_too_long`` and
``answer_time_limit`` (hard caps reached; the partial answer is kept) and
``not_saved`` (the answer could not be stored). ``interrupted`` is the error code a
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
