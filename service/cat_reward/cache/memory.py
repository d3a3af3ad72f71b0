"""An in-process LRU cache with per-entry expiry: the default when no Redis is configured.
It is per process, so replicas do not share it; use Redis for that."""

from __future__ import annotations

import copy
import time
from collections import OrderedDict


_FLAT = frozenset((str, int, float, bool, type(None)))


def _is_flat(value: dict) -> bool:
    # Callers get and give copies, so that no one mutates an entry in place. Most entries
    # (verdicts) are flat dicts of scalars, for which a shallow copy is a full one and much
    # cheaper; whether an entry is flat is found once, when it is stored.
    return _FLAT.issuperset(map(type, value.values()))


class MemoryCache:
    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        # key -> (expiry, entry, whether the entry is flat: then a shallow copy is a full one)
        self._data: OrderedDict[str, tuple[float, dict, bool]] = OrderedDict()

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
                found.append(dict(item[1]) if item[2] else copy.deepcopy(item[1]))
        return found

    async def set_many(self, items: dict[str, dict], ttl_s: float) -> None:
        expires = time.monotonic() + ttl_s
        data = self._data
        for key, value in items.items():
            flat = _is_flat(value)
            data[key] = (expires, dict(value) if flat else copy.deepcopy(value), flat)
            data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def aclose(self) -> None:
        self._data.clear()
