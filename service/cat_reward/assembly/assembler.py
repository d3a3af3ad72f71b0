"""The group-assembly protocol, on top of an ``AssemblyStore``.

A request adds its samples, then waits. The request that sees the group complete (or the first
to see its deadline pass) claims the scoring, scores the group once, and publishes the result;
every waiter then takes its own rewards from it. A claim is a lease: if its holder dies, a
waiter claims again when the lease runs out. A failed attempt (e.g. the judge was down) is
published as that attempt's error, and the group opens a new attempt, so a retried sample
triggers a fresh scoring instead of meeting the old error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..metrics import ASSEMBLY_GROUPS, ASSEMBLY_WAIT_SECONDS
from .base import AssemblyStore, StoreConflict, StoreFull

log = logging.getLogger(__name__)

# score(spec, rollouts) -> the group's reward response as JSON, or raises.
Scorer = Callable[[dict, list[str]], Awaitable[dict]]
# error_of(exception) -> the error as JSON ({type, message, param, retry_after}) for an exception
# raised by the scorer, or None for an unexpected one.
ErrorMapper = Callable[[BaseException], "dict | None"]


@dataclass(frozen=True)
class SampleIn:
    rollout: str
    index: int | None = None


class GroupConflict(Exception):
    """The samples contradict the group (another rollout at an index, another size, too late)."""


class GroupFull(GroupConflict):
    """The group already has all its samples, and none of them is this rollout."""


class GroupClosed(GroupConflict):
    """The sample arrived after its group had been scored without it (a partial group)."""


class GroupFailed(Exception):
    """Scoring the group failed; carries the error (``{type, message, param, retry_after}``) every
    waiter reports."""

    def __init__(self, error: dict):
        super().__init__(error.get("message", "group scoring failed"))
        self.error = error


@dataclass(frozen=True)
class Assembled:
    indices: list[int]  # where this request's samples sit in the group
    positions: list[int]  # where they sit in the scored rollouts (a partial group is compacted)
    scored_indices: list[int]
    size: int
    payload: dict  # the group's reward response


class GroupAssembler:
    def __init__(
        self,
        store: AssemblyStore,
        scorer: Scorer,
        error_of: ErrorMapper,
        *,
        ttl_s: float = 3600.0,
        lease_s: float = 600.0,
        poll_s: float = 0.05,
    ) -> None:
        self.store = store
        self._scorer = scorer
        self._error_of = error_of
        self._ttl_s = ttl_s
        self._lease_s = lease_s
        self._poll_s = poll_s

    async def submit(
        self,
        key: str,
        spec: dict,
        size: int,
        samples: list[SampleIn],
        *,
        deadline_s: float,
        min_size: int,
        idempotency_key: str | None = None,
    ) -> Assembled:
        started = time.monotonic()
        # A retried request (same idempotency key) lands on the indices it was given the first time.
        recalled = await self.store.recall(key, idempotency_key) if idempotency_key else None
        if recalled and len(recalled) == len(samples):
            pairs = [(index, s.rollout) for index, s in zip(recalled, samples)]
        else:
            pairs = [(s.index, s.rollout) for s in samples]
        try:
            added = await self.store.add(key, spec, size, pairs, self._ttl_s)
        except StoreFull as exc:
            raise GroupFull(str(exc)) from exc
        except StoreConflict as exc:
            raise GroupConflict(str(exc)) from exc
        indices = added.indices
        if idempotency_key:
            indices = await self.store.remember(key, idempotency_key, indices, self._ttl_s)
        deadline = added.created_at + deadline_s
        attempt = added.attempt
        poll = self._poll_s
        try:
            while True:
                result = await self.store.result(key)
                if result is not None and result["attempt"] >= attempt:
                    if result["ok"]:
                        return self._assembled(indices, result, size)
                    if result["attempt"] == attempt:
                        raise GroupFailed(result["error"])
                    attempt = result["attempt"] + 1  # an older failure: our samples join the next attempt
                received = await self.store.received(key)
                now = time.time()
                if (received >= size or now >= deadline) and await self.store.claim(key, attempt, self._lease_s):
                    await self._score(key, attempt, size, min_size)
                    continue
                if now > deadline + self._lease_s:
                    raise GroupFailed(
                        503,
                        {"type": "group_timeout", "message": f"group {key} was not scored in time", "retry_after": 5},
                    )
                await asyncio.sleep(poll)
                poll = min(poll * 1.5, 0.5)
        finally:
            ASSEMBLY_WAIT_SECONDS.observe(time.monotonic() - started)

    def _assembled(self, indices: list[int], result: dict, size: int) -> Assembled:
        scored = result["scored_indices"]
        where = {index: position for position, index in enumerate(scored)}
        late = [i for i in indices if i not in where]
        if late:
            raise GroupClosed(
                f"sample(s) at index {late} arrived after the group was scored with {len(scored)} of {size} samples"
            )
        return Assembled(indices, [where[i] for i in indices], scored, size, result["payload"])

    async def _score(self, key: str, attempt: int, size: int, min_size: int) -> None:
        spec, samples = await self.store.snapshot(key)
        scored_indices = sorted(samples)
        if len(scored_indices) < min(min_size, size):
            ASSEMBLY_GROUPS.labels(outcome="incomplete").inc()
            message = (
                f"group incomplete: {len(scored_indices)} of {size} samples arrived before the deadline "
                f"(at least {min_size} needed)"
            )
            error = {"type": "group_incomplete", "message": message}
            await self.store.finish(key, attempt, {"error": error}, ok=False, ttl_s=self._ttl_s)
            return
        try:
            payload = await self._scorer(spec, [samples[i] for i in scored_indices])
        except Exception as exc:
            error = self._error_of(exc)
            if error is None:
                log.exception("scoring assembled group %s failed", key)
                error = {"type": "internal_error", "message": f"internal error: {type(exc).__name__}"}
            ASSEMBLY_GROUPS.labels(outcome="failed").inc()
            await self.store.finish(key, attempt, {"error": error}, ok=False, ttl_s=self._ttl_s)
            return
        ASSEMBLY_GROUPS.labels(outcome="complete" if len(scored_indices) >= size else "partial").inc()
        await self.store.finish(
            key,
            attempt,
            {"payload": payload, "scored_indices": scored_indices, "finished_at": time.time()},
            ok=True,
            ttl_s=self._ttl_s,
        )
