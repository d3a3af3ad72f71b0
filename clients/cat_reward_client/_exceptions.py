"""The client's exceptions. Every error a call can raise derives from ``CatRewardError``.

    CatRewardError                 status, type, message, param, retry_after, details, attempts
    ├── TransportError             no HTTP answer: refused, reset, dropped connection (status None)
    │   └── RequestTimeout         a connect/read/write/pool timeout ran out
    ├── InvalidRequestError        4xx: the request is wrong as sent (422 and other 4xx); never retried
    │   └── NotFoundError          404: unknown path or record (e.g. a rubric id)
    ├── UnavailableError           503 (and 429): anchor/judge unreachable or overloaded; retry_after
    ├── UpstreamError              502: the anchor or judge produced unusable output
    ├── ServerError                500 and any other unexpected status
    └── ResponseDecodeError        an answer the client cannot read (not JSON, wrong shape)

``status``, ``type``, ``message``, ``param``, ``retry_after`` and ``details`` mirror the
server's envelope ``{"error": {type, message, param, retry_after, details}}``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CatRewardError",
    "InvalidRequestError",
    "NotFoundError",
    "RequestTimeout",
    "ResponseDecodeError",
    "ServerError",
    "TransportError",
    "UnavailableError",
    "UpstreamError",
]


class CatRewardError(Exception):
    """Base of every error raised by the client.

    Attributes:
        status: the HTTP status, or ``None`` when no answer was received.
        type: the server's error type (``invalid_request``, ``llm_unavailable``, ...).
        message: the human-readable message.
        param: the offending request field (e.g. ``rollouts``, ``groups.1.options.num_criteria``).
        retry_after: seconds the server asked to wait before retrying, when it said.
        details: per-field details of a validation error, when sent.
        attempts: how many HTTP attempts the call made before giving up.
        raw: the parsed error body, when there was one.
    """

    default_type = "cat_reward_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        details: list[dict[str, Any]] | None = None,
        raw: Any = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type or self.default_type
        self.param = param
        self.retry_after = retry_after
        self.details = details
        self.raw = raw
        self.attempts = attempts

    def __str__(self) -> str:
        head = f"{self.status} {self.type}" if self.status is not None else self.type
        text = f"[{head}] {self.message}"
        if self.param:
            text += f" (param: {self.param})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, type={self.type!r}, "
            f"message={self.message!r}, param={self.param!r})"
        )


class TransportError(CatRewardError):
    """No HTTP answer was received (connection refused or dropped). ``__cause__`` holds the httpx error."""

    default_type = "transport_error"


class RequestTimeout(TransportError):
    """A timeout ran out before the server answered."""

    default_type = "timeout"


class InvalidRequestError(CatRewardError):
    """The server rejected the request as sent (422, other 4xx). Retrying it unchanged cannot help."""

    default_type = "invalid_request"


class NotFoundError(InvalidRequestError):
    """404: the path or the record does not exist."""

    default_type = "not_found"


class UnavailableError(CatRewardError):
    """503 (or 429): an LLM backend is unreachable or overloaded. ``retry_after`` says when to come back."""

    default_type = "llm_unavailable"


class UpstreamError(CatRewardError):
    """502: the anchor or the judge answered with output the service could not use."""

    default_type = "upstream_error"


class ServerError(CatRewardError):
    """500 or another status the client does not expect."""

    default_type = "server_error"


class ResponseDecodeError(CatRewardError):
    """The server answered, but not with the JSON shape the client expects."""

    default_type = "decode_error"
