"""Which endpoint of a role's URL list a request goes to, and when.

A role (anchor, judge) may list several OpenAI-compatible endpoints (replicas of one model). With
a router in front (vLLM's ``vllm-router``: one URL), the router balances; with a plain URL list the
service does, in the smallest way that works for a burst of verdict batches:

- **Least outstanding.** A request goes to the endpoint with the fewest prompts in flight (a
  verdict batch of 64 prompts weighs 64, a chat call 1), ties broken in turn.
- **Circuit breaker.** ``breaker_failures`` failed attempts in a row open an endpoint's breaker: it
  is skipped for ``breaker_cooldown_s``, then tried again (one more failure re-opens it at once, a
  success closes it; until then it gets one request at a time, so a judge still down draws no
  burst for having nothing in flight). With every breaker open a request fails at once
  (``LLMUnavailable``: 503 with Retry-After), never hangs.
- **Backpressure.** At most ``max_prompts`` prompts and ``max_requests`` requests are in flight
  per endpoint (a request heavier than ``max_prompts`` still goes to an idle endpoint). The rest
  wait here, in one FIFO per role, and are admitted strictly in arrival order as room frees up,
  with no time limit while waiting (the HTTP timeout starts when the request is sent).
- **Group affinity** (off by default). With a group key, the endpoint ranked first for that key by
  rendezvous hashing is taken only while it is at most one request's prompts ahead of the least
  loaded endpoint; otherwise the least loaded endpoint is. Bounding by prompts, not requests, and
  by the least loaded, not by a multiple of the mean, keeps a burst of one group's batches (or of
  many groups that hash alike) from piling onto one endpoint: the spread stays within about two
  requests' prompts.

The pool holds no sockets: the caller acquires an endpoint index, makes the call, and releases it
with the outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable

from ..engine.errors import LLMUnavailable

log = logging.getLogger(__name__)


class _Waiter:
    __slots__ = ("future", "weight", "key", "avoid")

    def __init__(self, future: asyncio.Future, weight: int, key: str | None, avoid: int | None) -> None:
        self.future = future
        self.weight = weight
        self.key = key
        self.avoid = avoid


class EndpointPool:
    def __init__(
        self,
        role: str,
        urls: list[str],
        *,
        max_requests: int = 64,
        max_prompts: int = 512,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 10.0,
        affinity: bool = False,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not urls:
            raise ValueError(f"{role}: at least one endpoint is needed")
        if max_requests < 1 or max_prompts < 1 or breaker_failures < 1:
            raise ValueError("max_requests, max_prompts and breaker_failures must be >= 1")
        self.role = role
        self.urls = list(urls)
        self.max_requests = max_requests
        self.max_prompts = max_prompts
        self.breaker_failures = breaker_failures
        self.breaker_cooldown_s = breaker_cooldown_s
        self.affinity = affinity
        n = len(self.urls)
        self.requests = [0] * n  # requests in flight per endpoint
        self.prompts = [0] * n  # prompts in flight per endpoint
        self._failures = [0] * n
        self._open_until = [0.0] * n
        self._trial = [False] * n  # breaker opened before and no success since: one request at a time
        self._turn = 0
        self._waiters: deque[_Waiter] = deque()
        self.waiting_prompts = 0
        self._timer: asyncio.TimerHandle | None = None
        self._on_change = on_change
        self._seeds = [hashlib.blake2b(u.encode(), digest_size=8).digest() for u in self.urls]

    # -- state ------------------------------------------------------------------------------
    def is_open(self, index: int, now: float | None = None) -> bool:
        return self._open_until[index] > (time.monotonic() if now is None else now)

    def all_open(self) -> bool:
        now = time.monotonic()
        return all(self.is_open(i, now) for i in range(len(self.urls)))

    def retry_after(self) -> float:
        return max(1.0, min(self._open_until) - time.monotonic())

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    # -- acquire / release -------------------------------------------------------------------
    async def acquire(self, weight: int = 1, *, key: str | None = None, avoid: int | None = None) -> int:
        """An endpoint index with room for ``weight`` prompts (waiting in arrival order for room),
        preferring another endpoint than ``avoid`` (the one that just failed). Raises
        ``LLMUnavailable`` at once when every endpoint's breaker is open."""
        weight = max(1, weight)
        if not self._waiters:
            index = self._pick(weight, key, avoid)
            if index is not None:
                self._take(index, weight)
                return index
        if self.all_open():
            raise self._unavailable()
        waiter = _Waiter(asyncio.get_running_loop().create_future(), weight, key, avoid)
        self._waiters.append(waiter)
        self.waiting_prompts += weight
        self._changed()
        try:
            return await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
                self.release(waiter.future.result(), weight)  # admitted as it was cancelled: give it back
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
                self.waiting_prompts -= weight
                self._changed()
                self._wake()
            raise

    def release(self, index: int, weight: int, *, ok: bool | None = None) -> None:
        """Give back an endpoint; ``ok`` True: it answered, False: the attempt failed (transport
        error, timeout, 429/5xx), None: no verdict on the endpoint."""
        self.requests[index] -= 1
        self.prompts[index] -= max(1, weight)
        if ok is True:
            self._failures[index] = 0
            self._trial[index] = False
        elif ok is False:
            self.failed(index)
        self._changed()
        self._wake()

    def failed(self, index: int) -> None:
        self._failures[index] += 1
        if self._failures[index] >= self.breaker_failures:
            self.mark_down(index, f"{self.breaker_failures} failures in a row")

    def mark_down(self, index: int, why: str) -> None:
        """Open the breaker of ``index`` for the cool-down; afterwards one failure re-opens it."""
        self._open_until[index] = time.monotonic() + self.breaker_cooldown_s
        self._failures[index] = self.breaker_failures - 1
        self._trial[index] = True
        log.warning(
            "%s endpoint %s: circuit open for %.0f s (%s)", self.role, self.urls[index], self.breaker_cooldown_s, why
        )

    # -- internals -----------------------------------------------------------------------------
    def _take(self, index: int, weight: int) -> None:
        self.requests[index] += 1
        self.prompts[index] += weight
        self._changed()

    def _fits(self, index: int, weight: int) -> bool:
        if self.requests[index] >= (1 if self._trial[index] else self.max_requests):
            return False
        return self.prompts[index] == 0 or self.prompts[index] + weight <= self.max_prompts

    def _pick(self, weight: int, key: str | None, avoid: int | None) -> int | None:
        now = time.monotonic()
        closed = [i for i in range(len(self.urls)) if not self.is_open(i, now)]
        candidates = [i for i in closed if self._fits(i, weight)]
        if len(candidates) > 1 and avoid in candidates:
            candidates.remove(avoid)
        if not candidates:
            return None
        n = len(self.urls)
        turn = self._turn
        self._turn = (turn + 1) % n
        least = min(candidates, key=lambda i: (self.prompts[i], self.requests[i], (i - turn) % n))
        if not (self.affinity and key) or len(closed) < 2:
            return least
        preferred = max(closed, key=lambda i: hashlib.blake2b(key.encode(), digest_size=8, key=self._seeds[i]).digest())
        if preferred in candidates and self.prompts[preferred] <= self.prompts[least] + weight:
            return preferred
        return least

    def _wake(self) -> None:
        """Admit waiters from the head while the head fits somewhere (strict arrival order)."""
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():  # cancelled while waiting
                self._waiters.popleft()
                self.waiting_prompts -= head.weight
                continue
            index = self._pick(head.weight, head.key, head.avoid)
            if index is None:
                if self.all_open():
                    self._fail_waiters()
                else:
                    self._wake_when_a_breaker_closes()
                break
            self._waiters.popleft()
            self.waiting_prompts -= head.weight
            self._take(index, head.weight)
            head.future.set_result(index)
        self._changed()

    def _wake_when_a_breaker_closes(self) -> None:
        now = time.monotonic()
        pending = [t for t in self._open_until if t > now]
        if not pending or self._timer is not None:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timer = None
            self._wake()

        self._timer = loop.call_later(min(pending) - now + 0.001, fire)

    def _fail_waiters(self) -> None:
        error = self._unavailable()
        while self._waiters:
            waiter = self._waiters.popleft()
            self.waiting_prompts -= waiter.weight
            if not waiter.future.done():
                waiter.future.set_exception(error)

    def _unavailable(self) -> LLMUnavailable:
        wait = self.retry_after()
        return LLMUnavailable(
            f"{self.role} backend circuit open after repeated failures at every endpoint "
            f"({', '.join(self.urls)}); retrying in {wait:.0f} s",
            role=self.role,
            retry_after=wait,
        )

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:  # noqa: BLE001 - metrics must never fail a request
                log.exception("endpoint pool observer failed")
