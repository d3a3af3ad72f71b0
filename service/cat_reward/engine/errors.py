"""The engine's error tree. Every failure that stops a whole group is one of these.

    CatError
    ├── InvalidGroup              the request cannot be scored as asked (HTTP 422)
    ├── LLMError
    │   ├── LLMUnavailable        backend unreachable, timing out, overloaded (HTTP 503)
    │   ├── LLMRequestRejected    backend refused the request, e.g. context too long (HTTP 422)
    │   └── LLMBadResponse        backend answered with something unreadable (HTTP 502)
    └── GenerationFailed          the anchor's output stayed unusable after retries (HTTP 502)
        ├── SynthesisFailed
        └── RubricGenerationFailed

Per-rollout failures (an unparseable verdict, an answer check that timed out) are not
exceptions: they are recorded on the rollout, whose reward is then ``None``.
"""

from __future__ import annotations


class CatError(Exception):
    """Base of every error the engine raises."""

    type: str = "cat_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidGroup(CatError):
    type = "invalid_request"


class LLMError(CatError):
    type = "llm_error"

    def __init__(self, message: str, *, role: str | None = None, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.role = role


class LLMUnavailable(LLMError):
    type = "llm_unavailable"

    def __init__(self, message: str, *, role: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, role=role)
        self.retry_after = retry_after


class LLMRequestRejected(LLMError):
    type = "llm_request_rejected"


class LLMBadResponse(LLMError):
    type = "llm_bad_response"


class GenerationFailed(CatError):
    type = "generation_failed"


class SynthesisFailed(GenerationFailed):
    type = "synthesis_failed"


class RubricGenerationFailed(GenerationFailed):
    type = "rubric_generation_failed"
