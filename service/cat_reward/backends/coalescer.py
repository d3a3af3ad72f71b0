"""Coalesce small requests from concurrent callers into shared backend batches.

Every caller (one group's verdict stage) submits its items under a key (the sampling
parameters: only items that can share one backend request share a key). Items wait in a
per-key queue; a batch leaves as soon as ``max_batch`` items are queued, or when the oldest
queued item has waited ``max_wait_s``. At most ``max_inflight`` batches are in flight; the
others wait for a slot. So G x n verdicts of one group become ceil(G*n / max_batch) requests,
and concurrent groups fill each other's batches instead of each firing their own.

A batch's ``send`` returns one result per item, in order; a result may be an exception, which
is raised to the caller that submitted that item only (one bad prompt does not fail another
group). If ``send`` itself raises, every caller in the batch gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[K, list[T]], Awaitable[list["R | BaseException"]]]


class Coalescer(Generic[K, T, R]):
    def __init__(self, send: Send, *, max_batch: int, max_wait_s: float, max_inflight: int) -> None:
        if max_batch < 1 or max_inflight < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_inflight must be >= 1 and max_wait_s >= 0")
        self._send = send
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_inflight = max_inflight
        self._pending: dict[K, list[tuple[T, asyncio.Future]]] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self._slots: asyncio.Semaphore | None = None  # made on first use, on the running loop
        self.batches_sent = 0

    async def submit(self, key: K, items: list[T]) -> list[R]:
        """Queue ``items`` and wait for their results (in order)."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        queue = self._pending.setdefault(key, [])
        queue.extend(zip(items, futures))
        while len(queue) >= self.max_batch:
            self._launch(key, queue[: self.max_batch])
            del queue[: self.max_batch]
        if queue and key not in self._timers:
            self._timers[key] = loop.call_later(self.max_wait_s, self._due, key)
        elif not queue:
            self._drop_queue(key)
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for future in futures:
                future.cancel()  # a queued item whose caller is gone is not sent
            raise

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._pending.values())

    def _due(self, key: K) -> None:
        self._timers.pop(key, None)
        queue = self._pending.pop(key, [])
        for start in range(0, len(queue), self.max_batch):
            self._launch(key, queue[start : start + self.max_batch])

    def _drop_queue(self, key: K) -> None:
        self._pending.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _launch(self, key: K, entries: list[tuple[T, asyncio.Future]]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(key, entries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: K, entries: list[tuple[T, asyncio.Future]]) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_inflight)
        async with self._slots:
            live = [(item, future) for item, future in entries if not future.done()]
            if not live:
                return
            self.batches_sent += 1
            try:
                results = await self._send(key, [item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"a batch of {len(live)} items came back with {len(results)} results")
            except BaseException as exc:  # noqa: BLE001 - every waiter gets the batch's error
                for _, future in live:
                    if not future.done():
                        if isinstance(exc, asyncio.CancelledError):
                            future.cancel()
                        else:
                            future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            for (_, future), result in zip(live, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
