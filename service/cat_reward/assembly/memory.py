"""In-process assembly store: the embedded default (one process; use Redis for replicas)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from .base import Added, StoreConflict, StoreFull


@dataclass
class _Group:
    spec: dict
    size: int
    created_at: float
    expires_at: float
    samples: dict[int, str] = field(default_factory=dict)
    attempt: int = 0
    claim: tuple[int, float] | None = None  # (attempt, lease expiry)
    result: dict | None = None
    idempotency: dict[str, list[int]] = field(default_factory=dict)


def _place(samples: dict[int, str], rollout: str, size: int) -> int:
    """Where a sample without an index goes: the lowest free index; in a full group, the index
    already holding the same rollout (a retry), else a conflict."""
    if len(samples) >= size:
        for index, held in samples.items():
            if held == rollout:
                return index
        raise StoreFull(f"the group already has its {size} samples")
    return next(i for i in range(size) if i not in samples)


class MemoryAssemblyStore:
    def __init__(self, sweep_interval_s: float = 10.0) -> None:
        self._groups: dict[str, _Group] = {}
        self._generations: dict[str, tuple[int, float]] = {}  # key -> (generation, expiry)
        self._lock = asyncio.Lock()
        self._sweep_interval_s = sweep_interval_s
        self._last_sweep = time.time()

    def _sweep(self, now: float) -> None:
        """Drop expired groups and generation counters: a key that is never looked up again
        (every finished group of a long run) must not stay in memory for ever."""
        if now - self._last_sweep < self._sweep_interval_s:
            return
        self._last_sweep = now
        for key in [k for k, g in self._groups.items() if g.expires_at <= now]:
            del self._groups[key]
        for key in [k for k, (_, expiry) in self._generations.items() if expiry <= now]:
            del self._generations[key]

    def _get(self, key: str) -> _Group | None:
        group = self._groups.get(key)
        if group is not None and group.expires_at <= time.time():
            del self._groups[key]
            return None
        return group

    async def add(self, key, spec, size, samples, ttl_s) -> Added:
        async with self._lock:
            now = time.time()
            self._sweep(now)
            group = self._get(key)
            if group is None:
                group = self._groups[key] = _Group(spec=spec, size=size, created_at=now, expires_at=now + ttl_s)
            if group.size != size:
                raise StoreConflict(f"group size is {group.size}, this request says {size}")
            for index, rollout in samples:  # check everything before changing anything
                held = group.samples.get(index) if index is not None else None
                if held is not None and held != rollout:
                    raise StoreConflict(f"index {index} already holds a different rollout")
            indices = []
            for index, rollout in samples:
                if index is None:
                    index = _place(group.samples, rollout, group.size)
                group.samples[index] = rollout
                indices.append(index)
            return Added(indices, len(group.samples), group.size, group.attempt, group.created_at)

    async def received(self, key):
        group = self._get(key)
        return len(group.samples) if group else 0

    async def claim(self, key, attempt, lease_s):
        async with self._lock:
            group = self._get(key)
            if group is None or group.attempt != attempt:
                return False
            now = time.time()
            if group.claim is not None and group.claim[0] == attempt and group.claim[1] > now:
                return False
            group.claim = (attempt, now + lease_s)
            return True

    async def snapshot(self, key):
        group = self._get(key)
        if group is None:
            return {}, {}
        return group.spec, dict(group.samples)

    async def finish(self, key, attempt, result, ok, ttl_s):
        async with self._lock:
            group = self._get(key)
            if group is None:
                return
            group.result = {**result, "attempt": attempt, "ok": ok}
            group.claim = None
            if not ok:
                group.attempt = attempt + 1
            group.expires_at = max(group.expires_at, time.time() + ttl_s)

    async def result(self, key):
        group = self._get(key)
        return group.result if group else None

    async def remember(self, key, idempotency_key, indices, ttl_s):
        group = self._get(key)
        if group is None:
            return indices
        return group.idempotency.setdefault(idempotency_key, indices)

    async def recall(self, key, idempotency_key):
        group = self._get(key)
        return group.idempotency.get(idempotency_key) if group else None

    async def generation(self, key):
        held = self._generations.get(key)
        return held[0] if held is not None and held[1] > time.time() else 0

    async def advance_generation(self, key, expected, ttl_s):
        async with self._lock:
            self._sweep(time.time())
            current = await self.generation(key)
            if current == expected:
                current += 1
                self._generations[key] = (current, time.time() + ttl_s)
            return current

    async def aclose(self):
        self._groups.clear()
        self._generations.clear()
