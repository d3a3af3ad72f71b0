"""An in-process LRU cache with per-entry expiry: the default when no Redis is configured.
It is per process, so replicas do not share it; use Redis for that."""

from __future__ import annotations

import copy
import time
from collections import OrderedDict


_FLAT = (str, int, float, bool, type(None))


def _copy(value: dict) -> dict:
    # Callers get and give copies, so that no one mutates an entry in place. Most entries
    # (verdicts) are flat dicts, for which a shallow copy is a full one and much cheaper.
    if all(type(v) in _FLAT for v in value.values()):
        return dict(value)
    return copy.deepcopy(value)


class MemoryCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._data: OrderedDict[str, tuple[float, dict]] = OrderedDict()

    async def get_many(self, keys: list[str]) -> list[dict | None]:
        now = time.monotonic()
        found: list[dict | None] = []
        for key in keys:
            item = self._data.get(key)
            if item is None or item[0] <= now:
                if item is not None:
                    del self._data[key]
                found.append(None)
            else:
                self._data.move_to_end(key)
                found.append(_copy(item[1]))
        return found

    async def set_many(self, items: dict[str, dict], ttl_s: float) -> None:
        expires = time.monotonic() + ttl_s
        for key, value in items.items():
            self._data[key] = (expires, _copy(value))
            self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def aclose(self) -> None:
        self._data.clear()
