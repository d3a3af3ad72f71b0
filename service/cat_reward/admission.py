"""Admission control: how many groups one process scores at once, and how many may wait.

A training loop that sends faster than the judges answer must hear "later" early, not build an
unbounded queue in the service's memory until every request times out. So each process admits at
most ``CAT_MAX_ACTIVE_GROUPS + CAT_MAX_QUEUED_GROUPS`` groups; past that a request is refused at
once (503 ``overloaded`` with Retry-After), before any LLM work. An admitted group waits for one of
the active slots at most ``CAT_QUEUE_TIMEOUT_S``; then it too is refused. A batch is admitted whole
or not at all; once admitted its groups wait as long as it takes, so none of its LLM work is thrown
away. A batch larger than the whole room is a 422: it could never be admitted. Replicas each have their own budget: the load balancer spreads, the clients retry.
"""

from __future__ import annotations

import asyncio
import math
import time
from contextlib import asynccontextmanager

from .engine.errors import CatError, InvalidGroup
from .metrics import ADMISSION_REJECTIONS, GROUPS_ACTIVE, GROUPS_QUEUED, INFLIGHT_GROUPS


# The values this process last wrote to GROUPS_ACTIVE, GROUPS_QUEUED, INFLIGHT_GROUPS (only
# Admission._publish writes them); None: not written yet.
_published: list[int | None] = [None, None, None]


class Overloaded(CatError):
    """This process has no room for the group now (HTTP 503 with Retry-After)."""

    type = "overloaded"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Admission:
    def __init__(self, max_active: int, max_queued: int, queue_timeout_s: float) -> None:
        self.max_active = max_active
        self.max_queued = max_queued
        self.queue_timeout_s = queue_timeout_s
        self._slots = asyncio.Semaphore(max_active)
        self._admitted = 0  # groups admitted and not finished: active + waiting
        self._active = 0
        self._recent_s = 1.0  # a running estimate of one group's time, for Retry-After

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return self._admitted - self._active

    def _retry_after(self) -> float:
        # Roughly when the queue ahead will have drained; at least a second, at most a minute.
        backlog = max(1, self.waiting) / max(1, self.max_active)
        return float(min(60, max(1, math.ceil(backlog * self._recent_s))))

    def _publish(self) -> None:
        # Only the gauges whose value changed (a set of an equal value changes nothing), each
        # compared with what this process last wrote to it: about half the sets of a group.
        active, admitted = self._active, self._admitted
        if _published[0] != active:
            GROUPS_ACTIVE.set(active)
            _published[0] = active
        if _published[1] != admitted - active:
            GROUPS_QUEUED.set(admitted - active)
            _published[1] = admitted - active
        if _published[2] != admitted:
            INFLIGHT_GROUPS.set(admitted)
            _published[2] = admitted

    @asynccontextmanager
    async def admit(self, groups: int = 1):
        """Reserve room for ``groups`` groups, or raise ``Overloaded`` at once (``InvalidGroup``
        when they could never fit: retrying would not help)."""
        limit = self.max_active + self.max_queued
        if groups > limit:
            raise InvalidGroup(
                f"{groups} groups in one request can never be admitted here: the limit is {limit} "
                f"(CAT_MAX_ACTIVE_GROUPS={self.max_active} + CAT_MAX_QUEUED_GROUPS={self.max_queued}); send fewer",
                param="groups",
            )
        if self._admitted + groups > limit:
            ADMISSION_REJECTIONS.labels(reason="queue_full").inc()
            raise Overloaded(
                f"overloaded: {self._admitted} groups are in progress or waiting here and this request adds {groups}; "
                f"the limit is {limit} (CAT_MAX_ACTIVE_GROUPS={self.max_active} + CAT_MAX_QUEUED_GROUPS={self.max_queued}). "
                "Retry after the indicated time.",
                retry_after=self._retry_after(),
            )
        self._admitted += groups
        self._publish()
        try:
            yield self
        finally:
            self._admitted -= groups
            self._publish()

    @asynccontextmanager
    async def slot(self, *, bounded_wait: bool = True):
        """One active slot for an admitted group, waiting at most the queue timeout. The groups of
        an admitted batch wait without it (``bounded_wait=False``): a batch is refused whole, up
        front, or scored whole, never dropped halfway after some of its groups cost LLM calls."""
        try:
            if not bounded_wait or (self.queue_timeout_s > 0 and not self._slots.locked()):
                # A free slot is taken at once (no wait, so no timeout to arm: wait_for would start
                # a task and a timer for it).
                await self._slots.acquire()
            else:
                await asyncio.wait_for(self._slots.acquire(), timeout=self.queue_timeout_s)
        except asyncio.TimeoutError:
            ADMISSION_REJECTIONS.labels(reason="queue_timeout").inc()
            raise Overloaded(
                f"overloaded: the group waited {self.queue_timeout_s:g} s for one of {self.max_active} scoring slots "
                "(CAT_QUEUE_TIMEOUT_S, CAT_MAX_ACTIVE_GROUPS). Retry after the indicated time.",
                retry_after=self._retry_after(),
            ) from None
        self._active += 1
        self._publish()
        started = time.monotonic()
        try:
            yield
        finally:
            self._active -= 1
            self._slots.release()
            self._recent_s = 0.8 * self._recent_s + 0.2 * (time.monotonic() - started)
            self._publish()
