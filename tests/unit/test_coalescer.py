"""The coalescer that turns concurrent callers' small requests into shared batches."""

import asyncio

import pytest

from cat_reward.backends.coalescer import Coalescer

pytestmark = pytest.mark.anyio


class Backend:
    def __init__(self, delay_s: float = 0.0, fail_item=None, fail_batch: Exception | None = None):
        self.batches: list[tuple[object, list]] = []
        self.delay_s = delay_s
        self.fail_item = fail_item
        self.fail_batch = fail_batch

    async def send(self, key, items):
        self.batches.append((key, list(items)))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_batch is not None:
            raise self.fail_batch
        return [ValueError(f"bad {i}") if i == self.fail_item else f"{key}:{i}" for i in items]


async def test_full_batches_leave_at_once_and_the_rest_after_the_wait():
    backend = Backend()
    co = Coalescer(backend.send, max_batch=4, max_wait_s=0.05, max_inflight=8)
    results = await co.submit("k", list(range(10)))
    assert results == [f"k:{i}" for i in range(10)]
    assert [len(items) for _, items in backend.batches] == [4, 4, 2]


async def test_a_lone_small_request_waits_at_most_max_wait():
    backend = Backend()
    co = Coalescer(backend.send, max_batch=100, max_wait_s=0.01, max_inflight=1)
    results = await asyncio.wait_for(co.submit("k", [1, 2]), timeout=5)
    assert results == ["k:1", "k:2"] and len(backend.batches) == 1


async def test_concurrent_callers_fill_one_batch_and_get_their_own_results():
    backend = Backend()
    co = Coalescer(backend.send, max_batch=100, max_wait_s=0.05, max_inflight=1)
    a, b, c = await asyncio.gather(co.submit("k", [1, 2]), co.submit("k", [3]), co.submit("k", [4, 5, 6]))
    assert (a, b, c) == (["k:1", "k:2"], ["k:3"], ["k:4", "k:5", "k:6"])
    assert backend.batches == [("k", [1, 2, 3, 4, 5, 6])]


async def test_keys_are_never_mixed():
    backend = Backend()
    co = Coalescer(backend.send, max_batch=100, max_wait_s=0.02, max_inflight=4)
    await asyncio.gather(co.submit("a", [1]), co.submit("b", [2]), co.submit("a", [3]))
    assert sorted(backend.batches) == [("a", [1, 3]), ("b", [2])]


async def test_an_item_error_goes_to_its_caller_only():
    backend = Backend(fail_item=3)
    co = Coalescer(backend.send, max_batch=100, max_wait_s=0.02, max_inflight=1)
    ok, bad = await asyncio.gather(co.submit("k", [1, 2]), co.submit("k", [3, 4]), return_exceptions=True)
    assert ok == ["k:1", "k:2"]
    assert isinstance(bad, ValueError) and str(bad) == "bad 3"


async def test_a_batch_error_goes_to_every_caller():
    backend = Backend(fail_batch=ConnectionError("down"))
    co = Coalescer(backend.send, max_batch=100, max_wait_s=0.02, max_inflight=1)
    results = await asyncio.gather(co.submit("k", [1]), co.submit("k", [2]), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert len(backend.batches) == 1


async def test_a_cancelled_caller_is_not_sent_and_does_not_hurt_others():
    backend = Backend()
    co = Coalescer(backend.send, max_batch=100, max_wait_s=0.05, max_inflight=1)
    gone = asyncio.ensure_future(co.submit("k", ["gone"]))
    kept = asyncio.ensure_future(co.submit("k", ["kept"]))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == ["k:kept"]
    assert backend.batches == [("k", ["kept"])]
    assert co.queued == 0


async def test_a_cancelled_callers_items_leave_a_shared_batch_in_order():
    backend = Backend()
    co = Coalescer(backend.send, max_batch=100, max_wait_s=0.05, max_inflight=1)
    first = asyncio.ensure_future(co.submit("k", ["a1", "a2"]))
    gone = asyncio.ensure_future(co.submit("k", ["b1", "b2", "b3"]))
    last = asyncio.ensure_future(co.submit("k", ["c1", "c2"]))
    await asyncio.sleep(0)
    gone.cancel()
    assert await first == ["k:a1", "k:a2"] and await last == ["k:c1", "k:c2"]
    assert backend.batches == [("k", ["a1", "a2", "c1", "c2"])]


async def test_inflight_batches_are_bounded():
    backend = Backend(delay_s=0.02)
    co = Coalescer(backend.send, max_batch=1, max_wait_s=0, max_inflight=2)
    running = 0
    peak = 0
    inner = backend.send

    async def counting(key, items):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return await inner(key, items)
        finally:
            running -= 1

    co._send = counting
    assert await co.submit("k", list(range(6))) == [f"k:{i}" for i in range(6)]
    assert peak == 2 and co.batches_sent == 6


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        Coalescer(Backend().send, max_batch=0, max_wait_s=0.01, max_inflight=1)
