"""Wraps a cache so that its failures never fail a reward: a failed read is a miss, a failed
write is skipped, each is counted (``cat_cache_errors_total``) and logged (at most once per
cool-down). After a failure the backend is left alone for ``cooldown_s``, so a dead Redis
costs one timeout per cool-down, not one per request."""

from __future__ import annotations

import logging
import time
from collections import Counter
from itertools import repeat

from ..metrics import CACHE_ERRORS, CACHE_REQUESTS

log = logging.getLogger(__name__)


def _kind(key: str) -> str:
    return key.split(":", 1)[0]


def _count(keys: list[str], outcomes: list[str]) -> None:
    # One counter update per (kind, result), not per key: a group asks for G x n verdicts.
    counts: Counter = Counter(zip(map(_kind, keys), outcomes))
    for (kind, outcome), n in counts.items():
        CACHE_REQUESTS.labels(kind=kind, result=outcome).inc(n)


def _count_found(keys: list[str], found: list[dict | None]) -> None:
    """``_count`` of hits and misses; keys of one kind (a group's verdicts) without a step per key."""
    colon = keys[0].find(":")
    prefix = keys[0][: colon + 1]
    if colon < 0 or len(found) != len(keys) or not all(map(str.startswith, keys, repeat(prefix))):
        _count(keys, ["hit" if value is not None else "miss" for value in found])
        return
    misses = found.count(None)
    for outcome, n in (("hit", len(found) - misses), ("miss", misses)):
        if n:
            CACHE_REQUESTS.labels(kind=prefix[:-1], result=outcome).inc(n)


class ResilientCache:
    def __init__(self, inner, *, name: str = "cache", cooldown_s: float = 5.0) -> None:
        self.inner = inner
        self.name = name
        self._cooldown_s = cooldown_s
        self._down_until = 0.0
        self.errors = 0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, exc: BaseException) -> None:
        self.errors += 1
        CACHE_ERRORS.labels(op=op).inc()
        if self.available:
            log.warning("%s %s failed (%r); serving without it for %.0f s", self.name, op, exc, self._cooldown_s)
        self._down_until = time.monotonic() + self._cooldown_s

    async def get_many(self, keys: list[str]) -> list[dict | None]:
        if not keys:
            return []
        found: list[dict | None]
        if not self.available:
            _count(keys, ["skipped"] * len(keys))
            return [None] * len(keys)
        try:
            found = await self.inner.get_many(keys)
        except Exception as exc:  # noqa: BLE001 - any cache failure degrades to a miss
            self._failed("get", exc)
            _count(keys, ["error"] * len(keys))
            return [None] * len(keys)
        _count_found(keys, found)
        return found

    async def set_many(self, items: dict[str, dict], ttl_s: float) -> None:
        if not items or not self.available:
            return
        try:
            await self.inner.set_many(items, ttl_s)
        except Exception as exc:  # noqa: BLE001
            self._failed("set", exc)

    async def aclose(self) -> None:
        await self.inner.aclose()
