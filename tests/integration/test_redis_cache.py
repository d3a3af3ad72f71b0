"""The Redis cache against real Redis servers."""

from __future__ import annotations

import asyncio

import pytest
import redis

from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.cache import RedisCache, ResilientCache
from cat_reward.engine import CaTPipeline, Group, GroupOptions, load_prompt_set
from cat_reward.engine.ports import EquivalenceResult, Roles

from tests.unit.scripts import anchor_script, judge_script
from .conftest import REDIS_URL

pytestmark = pytest.mark.anyio


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference == candidate)


async def test_round_trip_ttl_and_namespace(redis_namespace):
    cache = RedisCache(REDIS_URL, redis_namespace)
    try:
        await cache.set_many({"verdict:a": {"met": True}, "verdict:b": {"met": False}}, ttl_s=30)
        assert await cache.get_many(["verdict:a", "verdict:b", "verdict:c"]) == [{"met": True}, {"met": False}, None]
        raw = redis.Redis.from_url(REDIS_URL)
        assert 0 < raw.pttl(redis_namespace + "verdict:a") <= 30_000
        raw.set(redis_namespace + "verdict:junk", b"\xff not json")
        raw.close()
        assert await cache.get_many(["verdict:junk"]) == [None]
        await cache.set_many({"verdict:short": {"met": True}}, ttl_s=0.05)
        await asyncio.sleep(0.2)
        assert await cache.get_many(["verdict:short"]) == [None]
    finally:
        await cache.aclose()


def pipeline(cache):
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    judge = ScriptedLLM(judge_script(lambda r, c: "5" in r), role="judge", model="j")
    return CaTPipeline(Roles(anchor=anchor, judge=judge), load_prompt_set(), ExactChecker(), cache=cache)


GROUP = Group(prompt="2+3?", rollouts=["\\boxed{5}", "\\boxed{6}"], mode="rubric", options=GroupOptions())


async def test_two_processes_share_the_cache(redis_namespace):
    """Two pipelines (two replicas) on one Redis: the second pays no LLM call."""
    first_cache = ResilientCache(RedisCache(REDIS_URL, redis_namespace))
    second_cache = ResilientCache(RedisCache(REDIS_URL, redis_namespace))
    try:
        first = await pipeline(first_cache).score(GROUP)
        second = await pipeline(second_cache).score(GROUP)
        assert first.usage.llm_calls > 0 and second.usage.llm_calls == 0
        assert second.rewards == first.rewards
    finally:
        await first_cache.aclose()
        await second_cache.aclose()


async def test_rewards_still_served_when_redis_dies(private_redis):
    url, process = private_redis
    cache = ResilientCache(RedisCache(url, "cat-test:"), cooldown_s=0.2)
    p = pipeline(cache)
    try:
        first = await p.score(GROUP)
        assert (await p.score(GROUP)).usage.llm_calls == 0  # cached while Redis lives
        process.kill()
        process.wait(timeout=10)
        down = await p.score(GROUP)
        assert down.rewards == first.rewards
        assert down.usage.llm_calls == first.usage.llm_calls  # served without the cache
        assert cache.errors >= 1
    finally:
        await cache.aclose()
