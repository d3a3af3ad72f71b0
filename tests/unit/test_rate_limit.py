"""The per-key rate limit: a sliding one-minute window, so a burst across a minute boundary cannot
pass twice the limit; refused hits do not count; Retry-After is when a hit would pass."""

import pytest

from cat_reward.auth import RateLimiter, sliding_wait

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def burst(limiter: RateLimiter, who: str, n: int) -> list[float | None]:
    return [await limiter.hit(who) for _ in range(n)]


async def test_a_burst_across_the_minute_boundary_is_held_to_the_limit():
    clock = Clock(60 * 1000 + 59.5)  # half a second before a minute ends
    limiter = RateLimiter(10, clock=clock)
    assert await burst(limiter, "k", 10) == [None] * 10
    clock.t += 1.0  # the next minute: a fixed window would allow 10 more now
    waits = await burst(limiter, "k", 10)
    assert all(w is not None for w in waits)
    assert await limiter.hit("other") is None  # each key has its own budget


async def test_refused_hits_do_not_count_and_retry_after_is_when_one_passes():
    clock = Clock(60 * 500)  # a minute starts
    limiter = RateLimiter(4, clock=clock)
    assert await burst(limiter, "k", 4) == [None] * 4
    for _ in range(50):  # hammering while refused
        wait = await limiter.hit("k")
        assert wait is not None
    clock.t += wait - 0.01
    assert await limiter.hit("k") is not None  # not yet
    clock.t += 0.02
    assert await limiter.hit("k") is None  # exactly when it said; the 50 refusals cost nothing


async def test_steady_traffic_under_the_limit_passes():
    """The estimate assumes the last minute's hits were spread evenly, so traffic just under the
    limit passes every time (traffic exactly at it may meet a refusal at a minute's start)."""
    clock = Clock(60 * 900)
    limiter = RateLimiter(6, clock=clock)
    refused = 0
    for _ in range(50):  # 5 per minute for 10 minutes, evenly spaced
        refused += await limiter.hit("k") is not None
        clock.t += 12.0
    assert refused == 0


@pytest.mark.parametrize(
    ("limit", "previous", "current", "elapsed"),
    [(3, 3, 0, 0.0), (3, 3, 1, 20.0), (2, 0, 2, 10.0), (5, 9, 4, 30.0), (1, 1, 1, 59.0), (10, 0, 10, 0.0)],
)
def test_sliding_wait_is_the_first_moment_a_hit_fits(limit, previous, current, elapsed):
    def estimate(t):  # the estimate t seconds later, with no hits meanwhile
        at = elapsed + t
        if at < 60:
            return previous * (1 - at / 60) + current
        return current * (1 - (at - 60) / 60)

    wait = sliding_wait(limit, previous, current, elapsed)
    assert estimate(wait + 1e-6) + 1 <= limit + 1e-9
    assert wait == 0 or estimate(max(0.0, wait - 0.5)) + 1 > limit
