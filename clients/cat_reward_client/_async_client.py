"""The asynchronous client: the same API as `CatRewardClient`, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from ._config import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, RetryPolicy, make_timeout
from ._core import ClientCore, Done, RequestSpec
from ._exceptions import ResponseDecodeError
from ._models import (
    BatchResult,
    Health,
    Mode,
    Prompt,
    Readiness,
    RewardGroup,
    RewardResult,
    RubricPage,
    SampleGroup,
    SamplesResult,
)

T = TypeVar("T")

# Indirection so tests can skip the waits.
_sleep = asyncio.sleep


class AsyncCatRewardClient:
    """Asynchronous (asyncio) client of the cat-reward service.

    Args:
        base_url: where the service listens.
        api_key: sent as ``Authorization: Bearer <api_key>`` when given.
        timeout: a float (seconds; connect stays at most 10 s), an ``httpx.Timeout``, or
            ``None`` to wait forever. Default: read 600 s, connect 10 s, write 60 s, pool 600 s.
        max_retries: retries after the first attempt; overrides ``retry.max_retries`` (default 3).
        retry: the full ``RetryPolicy`` (what is retried, backoff, Retry-After cap).
        headers: extra headers sent on every request.
        transport: a custom ``httpx.AsyncBaseTransport`` (e.g. ``httpx.ASGITransport`` or ``httpx.MockTransport``).

    Use it as an async context manager, or await ``aclose()``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._core = ClientCore(retry=retry, max_retries=max_retries)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=ClientCore.default_headers(api_key, headers),
            timeout=make_timeout(timeout),
            transport=transport,
        )

    @property
    def retry(self) -> RetryPolicy:
        return self._core.retry

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # --- lifecycle ---------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncCatRewardClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- endpoints ---------------------------------------------------------------------

    async def rewards(
        self,
        prompt: Prompt,
        rollouts: Iterable[str],
        mode: Mode | None = None,
        reference: str | None = None,
        options: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        rubric: Iterable[Mapping[str, Any]] | None = None,
        token_logprobs: Iterable[Iterable[float]] | None = None,
    ) -> RewardResult:
        """POST /rewards: score one group of rollouts of ``prompt``.

        ``idempotency_key`` defaults to the SHA-256 of the request body; every retry of
        this call sends the same key. ``metadata`` (run_id, step, group_id, tags) is sent
        as is, for services that keep an audit history. ``rubric`` (items with ``criterion``,
        optional ``points`` and ``tags``) has every rollout judged on the caller's rubric;
        ``token_logprobs`` gives one list of token log-probabilities per rollout.
        """
        return await self._send(
            self._core.rewards(prompt, rollouts, mode, reference, options, idempotency_key, metadata, rubric, token_logprobs)
        )

    async def rewards_batch(
        self, groups: Iterable[RewardGroup | Mapping[str, Any]], idempotency_key: str | None = None
    ) -> BatchResult:
        """POST /rewards/batch: score several groups; each item succeeds or fails on its own."""
        return await self._send(self._core.rewards_batch(groups, idempotency_key))

    async def rewards_samples(
        self,
        prompt: Prompt,
        samples: Iterable[str | Mapping[str, Any]],
        group: SampleGroup | Mapping[str, Any],
        mode: Mode | None = None,
        reference: str | None = None,
        options: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> SamplesResult:
        """POST /rewards/samples: send one sample, or part of a group, of ``prompt``.

        ``samples`` are rollout strings, or ``{"rollout": ..., "index": i}`` to place a sample at
        its index in the group. ``group`` is a ``SampleGroup`` (or a mapping with its fields):
        ``size`` (G), and optionally ``id`` (an explicit group key), ``step``, ``min_size``,
        ``deadline_s``. The call returns once the whole group is assembled and scored (or its
        deadline passed): the rewards of this call's samples, their indices in the group, and
        the group's full result.

        ``idempotency_key`` defaults to the SHA-256 of the body when every sample has an index,
        else to a random key per call (identical rollouts without an index are distinct
        samples); every HTTP retry of the call sends the same key.
        """
        return await self._send(
            self._core.rewards_samples(prompt, samples, group, mode, reference, options, metadata, idempotency_key)
        )

    async def healthz(self) -> Health:
        """GET /healthz: the process is up."""
        return await self._send(self._core.healthz())

    async def readyz(self) -> Readiness:
        """GET /readyz: whether the anchor and judge answer. Not ready is ``ready=False``, not an error."""
        return await self._send(self._core.readyz())

    async def get_rubric(self, rubric_id: str) -> dict[str, Any]:
        """GET /rubrics/{rubric_id}: the stored record as JSON. Raises ``NotFoundError`` when unknown."""
        return await self._send(self._core.get_rubric(rubric_id))

    async def list_rubrics(self, **filters: Any) -> RubricPage:
        """GET /rubrics with query filters (``prompt_hash``, ``run_id``, ``limit``, ``cursor``); ``None`` ones are dropped."""
        return await self._send(self._core.list_rubrics(filters))

    async def iter_rubrics(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every rubric matching ``filters``, following ``next_cursor`` page after page."""
        seen: set[str] = set()
        while True:
            page = await self.list_rubrics(**filters)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            if page.next_cursor in seen:
                raise ResponseDecodeError(f"GET /rubrics: cursor {page.next_cursor!r} repeats")
            seen.add(page.next_cursor)
            filters["cursor"] = page.next_cursor

    # --- transport ---------------------------------------------------------------------

    async def _send(self, spec: RequestSpec[T]) -> T:
        call = self._core.start(spec)
        while True:
            try:
                response = await self._http.request(
                    spec.method,
                    spec.path,
                    params=list(spec.params) or None,
                    content=spec.body,
                    headers=dict(spec.headers),
                )
            except httpx.TransportError as exc:
                step = call.on_transport_error(exc)
            else:
                step = call.on_response(response.status_code, response.headers, response.content)
                if isinstance(step, Done):
                    return step.value
            await _sleep(step.delay)
