"""Rolling groups: group keys for senders that name neither the group nor the step.

OpenRLHF sends each sample alone with only its prompt. The prompt recurs (G samples per step,
and again every epoch), so the prompt alone cannot key a group: its samples would pile into one
group forever. Instead each prompt has a *generation* counter in the assembly store, and the
group key is ``<prompt key>/<generation>``. A sample goes to the prompt's current generation;
when that group turns out to be closed, the sample advances the counter and tries the next one:

- full (``GroupFull``: it has its G samples and none of them is this rollout), or
- scored without this sample (``GroupClosed``: a partial group scored at its deadline), or
- scored successfully more than ``retry_window_s`` ago.

The counter moves by compare-and-set (``advance_generation(key, expected)``, atomic in both
stores), so samples that find the same group full at once all land on the same next generation
instead of each opening its own.

Retries: a sender that retries a failed request sends the same rollout again. While its group
is still open (assembling, scoring, or its last attempt failed), or was scored less than
``retry_window_s`` ago, the store takes the identical rollout for that sample (its own index,
its own result). After the window an identical rollout is a new sample of a new generation: a
later epoch may well produce the same text.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .assembler import GroupClosed, GroupFull
from .base import AssemblyStore

T = TypeVar("T")

MAX_HOPS = 64  # generations one sample may skip; more means the counter and the groups disagree


class RollingGroups:
    def __init__(self, store: AssemblyStore, *, ttl_s: float, retry_window_s: float) -> None:
        self.store = store
        self._ttl_s = ttl_s
        self._retry_window_s = retry_window_s

    async def submit(
        self,
        series: str,
        submit: Callable[[str], Awaitable[T]],
        store_key: Callable[[str], str],
    ) -> T:
        """Submit one sample of ``series`` (e.g. a prompt's hash) to its current generation.

        ``submit(group_id)`` adds the sample to that group and waits for its result;
        ``store_key(group_id)`` is the key under which the assembly store keeps that group.
        """
        generation = await self.store.generation(series)
        for _ in range(MAX_HOPS):
            group_id = f"{series}/{generation}"
            result = await self.store.result(store_key(group_id))
            if result is not None and result.get("ok") and time.time() - result.get("finished_at", 0.0) > self._retry_window_s:
                generation = await self.store.advance_generation(series, generation, self._ttl_s)
                continue
            try:
                return await submit(group_id)
            except (GroupFull, GroupClosed):
                generation = await self.store.advance_generation(series, generation, self._ttl_s)
        raise RuntimeError(f"no open group for {series} after {MAX_HOPS} generations")
