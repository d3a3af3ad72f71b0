"""EndpointPool: least outstanding, per-endpoint bounds with a FIFO wait, breakers, affinity."""

import asyncio

import pytest

from cat_reward.backends.endpoints import EndpointPool
from cat_reward.engine import LLMUnavailable

pytestmark = pytest.mark.anyio

URLS = ["http://a/v1", "http://b/v1", "http://c/v1", "http://d/v1"]


async def test_least_outstanding_prompts_first():
    pool = EndpointPool("judge", URLS[:2], max_prompts=1000)
    first = await pool.acquire(64)
    second = await pool.acquire(1)
    assert second != first  # the other one is idle
    third = await pool.acquire(1)
    assert third == second  # 1 prompt there against 64
    assert pool.prompts[first] == 64 and pool.prompts[second] == 2 and pool.requests[second] == 2


async def test_ties_rotate_over_idle_endpoints():
    pool = EndpointPool("judge", URLS[:3])
    picks = []
    for _ in range(6):
        index = await pool.acquire(1)
        picks.append(index)
        pool.release(index, 1, ok=True)
    assert picks == [0, 1, 2, 0, 1, 2]


async def test_beyond_the_bound_requests_wait_and_are_admitted_in_arrival_order():
    pool = EndpointPool("judge", URLS[:1], max_prompts=128)
    await pool.acquire(64)
    await pool.acquire(64)
    admitted = []

    async def later(name, weight):
        index = await pool.acquire(weight)
        admitted.append(name)
        return index

    waiting = [asyncio.create_task(later(name, w)) for name, w in [("big", 64), ("small", 1), ("small2", 1)]]
    await asyncio.sleep(0.01)
    assert admitted == [] and pool.waiting == 3 and pool.waiting_prompts == 66
    pool.release(0, 64, ok=True)  # room for "big" only; the small ones behind it keep their turn
    await asyncio.sleep(0.01)
    assert admitted == ["big"] and pool.prompts[0] == 128
    pool.release(0, 64, ok=True)
    await asyncio.sleep(0.01)
    assert admitted == ["big", "small", "small2"] and pool.waiting_prompts == 0
    await asyncio.gather(*waiting)


async def test_a_request_heavier_than_the_bound_still_goes_to_an_idle_endpoint():
    pool = EndpointPool("judge", URLS[:1], max_prompts=8)
    index = await asyncio.wait_for(pool.acquire(64), timeout=1)
    assert pool.prompts[index] == 64


async def test_request_bound_per_endpoint():
    pool = EndpointPool("judge", URLS[:2], max_requests=2, max_prompts=1000)
    held = [await pool.acquire(1) for _ in range(4)]
    assert sorted(held) == [0, 0, 1, 1]
    task = asyncio.create_task(pool.acquire(1))
    await asyncio.sleep(0.01)
    assert not task.done()
    pool.release(1, 1, ok=True)
    assert await asyncio.wait_for(task, timeout=1) == 1


async def test_a_cancelled_waiter_leaves_the_queue():
    pool = EndpointPool("judge", URLS[:1], max_prompts=4)
    await pool.acquire(4)
    task = asyncio.create_task(pool.acquire(4))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.waiting == 0 and pool.waiting_prompts == 0
    pool.release(0, 4, ok=True)
    assert pool.prompts == [0] and pool.requests == [0]


async def test_breaker_opens_routes_around_and_every_endpoint_open_fails_at_once():
    pool = EndpointPool("judge", URLS[:2], breaker_failures=2, breaker_cooldown_s=60)
    pool.release(await pool.acquire(1), 1, ok=False)  # endpoint 0 fails
    pool.release(await pool.acquire(1, avoid=0), 1, ok=True)  # a retry goes elsewhere
    assert not pool.is_open(0)
    pool.release(await pool.acquire(1), 1, ok=False)  # endpoint 0 again: the second failure in a row
    assert pool.is_open(0)
    assert [await pool.acquire(1) for _ in range(3)] == [1, 1, 1]
    pool.mark_down(1, "test")
    with pytest.raises(LLMUnavailable) as info:
        await pool.acquire(1)
    assert "circuit open" in info.value.message and info.value.retry_after >= 1


async def test_waiters_fail_when_the_last_endpoint_opens():
    pool = EndpointPool("judge", URLS[:1], max_prompts=1, breaker_failures=1)
    await pool.acquire(1)
    task = asyncio.create_task(pool.acquire(1))
    await asyncio.sleep(0.01)
    pool.release(0, 1, ok=False)  # the one endpoint's breaker opens: the waiter hears it now, not later
    with pytest.raises(LLMUnavailable):
        await asyncio.wait_for(task, timeout=1)


async def test_after_the_cool_down_one_failure_reopens():
    pool = EndpointPool("judge", URLS[:1], breaker_failures=5, breaker_cooldown_s=0.05)
    pool.mark_down(0, "unreachable at start")
    with pytest.raises(LLMUnavailable):
        await pool.acquire(1)
    await asyncio.sleep(0.06)
    index = await pool.acquire(1)  # a trial: one request at a time until it succeeds
    second = asyncio.create_task(pool.acquire(1))
    await asyncio.sleep(0.01)
    assert not second.done()
    pool.release(index, 1, ok=False)
    assert pool.is_open(0)
    with pytest.raises(LLMUnavailable):  # re-opened with a request waiting: it hears so at once
        await asyncio.wait_for(second, timeout=1)
    await asyncio.sleep(0.06)
    index = await pool.acquire(1)
    pool.release(index, 1, ok=True)  # a success closes it for good
    for _ in range(4):
        pool.release(await pool.acquire(1), 1, ok=False)
    assert not pool.is_open(0)


async def test_affinity_keeps_a_key_on_one_endpoint_when_idle():
    pool = EndpointPool("judge", URLS, affinity=True)
    homes = {}
    for key in [f"group-{i}" for i in range(40)]:
        picks = set()
        for _ in range(3):
            index = await pool.acquire(64, key=key)
            picks.add(index)
            pool.release(index, 64, ok=True)
        assert len(picks) == 1
        homes[key] = picks.pop()
    assert len(set(homes.values())) == 4  # keys spread over every endpoint


@pytest.mark.parametrize("same_key", [True, False])
async def test_affinity_never_concentrates_a_burst(same_key):
    # 64 batches of 64 prompts arrive at once and are all held: the worst case for affinity.
    pool = EndpointPool("judge", URLS, affinity=True, max_prompts=10**6)
    for i in range(64):
        await pool.acquire(64, key="one-group" if same_key else f"group-{i % 7}")
    assert max(pool.prompts) - min(pool.prompts) <= 2 * 64


async def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        EndpointPool("judge", [])
    with pytest.raises(ValueError):
        EndpointPool("judge", URLS, max_prompts=0)
