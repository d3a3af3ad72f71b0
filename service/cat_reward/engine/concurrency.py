"""Bounded concurrency for the engine's fan-outs (verdicts, answer checks, batch groups)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def gather_bounded(coros: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """Run awaitables at most ``limit`` at a time, results in order. The first exception
    cancels the others and is re-raised (no half-scored group is returned)."""
    semaphore = asyncio.Semaphore(max(1, limit))

    async def bounded(coro: Awaitable[T]) -> T:
        async with semaphore:
            return await coro

    tasks = [asyncio.ensure_future(bounded(c)) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
