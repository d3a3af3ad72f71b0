"""How ``cat-reward score`` scores one group: in process, through the service's own
``RewardService`` (the anchor, judge and math-verify of the ``CAT_*`` settings), or over HTTP
through the project's Python client (``--url``). Both read a row as ``POST /rewards`` does,
through the row reader the command line hands in (``api.rows``: this package never imports the
HTTP layer), and send the same fields (rubric, token_logprobs, options, metadata), so a file
scores the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..admission import Overloaded
from ..engine.errors import CatError, GenerationFailed, LLMBadResponse, LLMUnavailable
from ..rewarding import check_limits
from ..settings import Settings
from .inputs import BadRow, RowReader

RETRYABLE = (LLMUnavailable, Overloaded, LLMBadResponse, GenerationFailed)


@dataclass
class GroupFailed(Exception):
    """A group that could not be scored: the error as the API would send it."""

    type: str
    message: str
    param: str | None = None
    status: int | None = None
    retryable: bool = False

    def document(self) -> dict:
        return {"type": self.type, "message": self.message, "param": self.param, "status": self.status}


class InProcessScorer:
    """Scores with the service's pipeline built in this process (``open_services``)."""

    name = "in-process"

    def __init__(
        self, settings: Settings, *, rows: RowReader, history: bool = True, roles=None, checker=None
    ) -> None:
        self.settings = settings
        self.rows = rows
        self.history = history
        self.roles = roles
        self.checker = checker
        self.services = None

    @property
    def max_concurrency(self) -> int:
        return self.settings.active_groups

    async def __aenter__(self) -> InProcessScorer:
        from ..wiring import open_services

        self.services = await open_services(self.settings, roles=self.roles, checker=self.checker, with_history=self.history)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.services is not None:
            await self.services.aclose()

    def check(self, request) -> None:
        """The service's limits (CAT_MAX_ROLLOUTS, ...): a row over them is a bad row."""
        rewards = self.services.rewards
        try:
            check_limits(self.rows.job(request, rewards.defaults, self.settings.default_mode).group, self.settings)
        except CatError as exc:
            raise BadRow(f"{exc.param}: {exc.message}" if exc.param else exc.message) from None

    async def score(self, request, key: str) -> dict:
        rewards = self.services.rewards
        try:
            job = self.rows.job(request, rewards.defaults, self.settings.default_mode)
            return (await rewards.score(job, idempotency_key=key)).document
        except CatError as exc:
            raise GroupFailed(exc.type, exc.message, exc.param, self.rows.status(exc), isinstance(exc, RETRYABLE)) from None


class UrlScorer:
    """Scores through a running service with ``AsyncCatRewardClient`` (its retries on connection
    errors, 429 and 503 with Retry-After). The group's key is the request's Idempotency-Key, so a
    retried group lands on the same record."""

    name = "url"
    max_concurrency = None  # the service's admission answers 503/429 beyond its limits; the client waits

    def __init__(
        self, url: str, *, rows: RowReader, api_key: str | None, retries: int, timeout_s: float | None = None, transport=None
    ) -> None:
        self.url = url
        self.rows = rows
        self.api_key = api_key
        self.retries = retries
        self.timeout_s = timeout_s
        self.transport = transport
        self.client = None

    async def __aenter__(self) -> UrlScorer:
        from cat_reward_client import AsyncCatRewardClient

        kwargs = {} if self.timeout_s is None else {"timeout": self.timeout_s}
        self.client = AsyncCatRewardClient(
            self.url, api_key=self.api_key, max_retries=self.retries, transport=self.transport, **kwargs
        )
        return self

    async def __aexit__(self, *exc) -> None:
        if self.client is not None:
            await self.client.aclose()

    def check(self, request) -> None:
        """The service applies its own limits (a 422 is recorded as the group's failure)."""

    async def score(self, request, key: str) -> dict:
        from cat_reward_client import CatRewardError

        body = self.rows.normalized(request)
        try:
            result = await self.client.rewards(
                body["prompt"],
                body["rollouts"],
                mode=body.get("mode"),
                reference=body.get("reference"),
                options=body.get("options"),
                idempotency_key=key,
                metadata=body.get("metadata"),
                rubric=body.get("rubric"),
                token_logprobs=body.get("token_logprobs"),
            )
        except CatRewardError as exc:  # already retried by the client where that makes sense
            raise GroupFailed(exc.type, exc.message, exc.param, exc.status, retryable=False) from None
        return result.raw


def url_api_key(settings: Settings) -> str | None:
    """CAT_SCORE_API_KEY: the key ``cat-reward score --url`` sends."""
    return settings.score_api_key.get_secret_value() if settings.score_api_key is not None else None
