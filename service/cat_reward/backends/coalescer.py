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
from itertools import count, repeat
from operator import itemgetter
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[K, list[T]], Awaitable[list["R | BaseException"]]]


class _Ticket:
    """One ``submit`` call: a single future for all its items, filled in as their batches return."""

    __slots__ = ("future", "results", "left")

    def __init__(self, future: asyncio.Future, n: int) -> None:
        self.future = future
        self.results: list = [None] * n
        self.left = n

    def put(self, index: int, result) -> None:
        if self.future.done():  # cancelled, or failed by an earlier item
            return
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                self.future.cancel()
            else:
                self.future.set_exception(result)
            return
        self.results[index] = result
        self.left -= 1
        if not self.left:
            self.future.set_result(self.results)


Entry = tuple  # (item, _Ticket, index in its submit call)
_ITEM, _TICKET = itemgetter(0), itemgetter(1)


class Coalescer(Generic[K, T, R]):
    def __init__(
        self,
        send: Send,
        *,
        max_batch: int,
        max_wait_s: float,
        max_inflight: int,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_inflight < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_inflight must be >= 1 and max_wait_s >= 0")
        self._send = send
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_inflight = max_inflight
        self._pending: dict[K, list[Entry]] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self._slots: asyncio.Semaphore | None = None  # made on first use, on the running loop
        self.batches_sent = 0
        self._blocked = 0  # items of launched batches still waiting for an in-flight slot
        self._on_change = on_change

    async def submit(self, key: K, items: list[T]) -> list[R]:
        """Queue ``items`` and wait for their results (in order). The first item whose result is
        an exception raises it here; the others' results are then dropped."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        ticket = _Ticket(loop.create_future(), len(items))
        queue = self._pending.setdefault(key, [])
        queue.extend(zip(items, repeat(ticket), count()))  # (item, ticket, index), without a step per item
        while len(queue) >= self.max_batch:
            self._launch(key, queue[: self.max_batch])
            del queue[: self.max_batch]
        if queue and key not in self._timers:
            self._timers[key] = loop.call_later(self.max_wait_s, self._due, key)
        elif not queue:
            self._drop_queue(key)
        self._changed()
        try:
            return await ticket.future
        except BaseException:
            ticket.future.cancel()  # its items still queued are not sent
            raise

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._pending.values())

    @property
    def waiting(self) -> int:
        """Items not yet sent: queued for a batch, or in a batch waiting for a slot."""
        return self.queued + self._blocked

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _due(self, key: K) -> None:
        self._timers.pop(key, None)
        queue = self._pending.pop(key, [])
        for start in range(0, len(queue), self.max_batch):
            self._launch(key, queue[start : start + self.max_batch])
        self._changed()

    def _drop_queue(self, key: K) -> None:
        self._pending.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _launch(self, key: K, entries: list[Entry]) -> None:
        self._blocked += len(entries)  # until the batch has a slot
        task = asyncio.get_running_loop().create_task(self._run(key, entries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: K, entries: list[Entry]) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_inflight)
        try:
            await self._slots.acquire()
        finally:
            self._blocked -= len(entries)
            self._changed()
        try:
            # A batch holds the items of a few callers: whether each is still waiting, once per caller.
            gone = {ticket for ticket in set(map(_TICKET, entries)) if ticket.future.done()}
            live = [entry for entry in entries if entry[1] not in gone] if gone else entries
            if not live:
                return
            self.batches_sent += 1
            try:
                results = await self._send(key, list(map(_ITEM, live)))
                if len(results) != len(live):
                    raise RuntimeError(f"a batch of {len(live)} items came back with {len(results)} results")
            except BaseException as exc:  # noqa: BLE001 - every waiter gets the batch's error
                for _, ticket, index in live:
                    ticket.put(index, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            for (_, ticket, index), result in zip(live, results):
                ticket.put(index, result)
        finally:
            self._slots.release()
