"""What an assembly store must do atomically. Both adapters implement the same semantics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class StoreConflict(Exception):
    """A sample contradicts the group's state (another rollout at its index, another size)."""


class StoreFull(StoreConflict):
    """A sample without an index for a group that already has all its samples (and does not
    hold the same rollout, which would make the sample a retry of that one)."""


@dataclass(frozen=True)
class Added:
    indices: list[int]  # the index of each submitted sample, in order
    received: int
    size: int
    attempt: int  # the scoring attempt these samples will be part of
    created_at: float  # epoch seconds of the group's first sample


class AssemblyStore(Protocol):
    async def add(
        self, key: str, spec: dict, size: int, samples: list[tuple[int | None, str]], ttl_s: float
    ) -> Added:
        """Create the group if new (keeping the first spec), add the samples (an explicit index
        already holding the same rollout is a no-op; a different rollout there is a StoreConflict;
        no index takes the lowest free one), and report the state."""
        ...

    async def received(self, key: str) -> int: ...

    async def claim(self, key: str, attempt: int, lease_s: float) -> bool:
        """Take the right to score this attempt; expires after ``lease_s`` (a dead scorer)."""
        ...

    async def snapshot(self, key: str) -> tuple[dict, dict[int, str]]: ...

    async def finish(self, key: str, attempt: int, result: dict, ok: bool, ttl_s: float) -> None:
        """Publish the attempt's result. A failed attempt also opens the next one (retries)."""
        ...

    async def result(self, key: str) -> dict | None:
        """The latest published result: {"attempt", "ok", "payload" | "error"}."""
        ...

    async def remember(self, key: str, idempotency_key: str, indices: list[int], ttl_s: float) -> list[int]:
        """Store the indices given to a request's idempotency key (first writer wins); return them."""
        ...

    async def recall(self, key: str, idempotency_key: str) -> list[int] | None: ...

    async def generation(self, key: str) -> int:
        """The current generation of a rolling group series (0 when none was advanced)."""
        ...

    async def advance_generation(self, key: str, expected: int, ttl_s: float) -> int:
        """Compare-and-set: if the generation is still ``expected``, make it ``expected + 1``.
        Returns the generation after the call, whoever advanced it (so racing callers that saw
        the same full group all land on the same next one)."""
        ...

    async def aclose(self) -> None: ...
