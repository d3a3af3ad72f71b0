"""The Redis cache against real Redis servers."""

from __future__ import annotations

import asyncio
import json

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


async def test_values_read_back_as_the_standard_library_wrote_them(redis_namespace):
    """orjson writes, the standard library reads the rest: NaN and infinity survive (orjson alone
    would store null), None stays None, tuples come back as lists, non-ASCII text is kept; an
    entry an older version wrote with json.dumps still reads."""
    cache = RedisCache(REDIS_URL, redis_namespace)
    values = {
        "plain": {"met": True, "p_yes": 0.8731, "raw": "yes", "attempts": 1},
        "none": {"met": False, "p_yes": None, "raw": None, "attempts": 2},
        "nan": {"met": True, "p_yes": float("nan"), "raw": "yes", "attempts": 1},
        "inf": {"scores": [float("inf"), -float("inf")], "text": "null"},
        "text": {"reference": {"text": "Größe ≤ 5 — naïve", "tags": ("a", "b")}, "n": 2**70},
    }
    try:
        await cache.set_many(values, ttl_s=30)
        assert cache.scripts  # the shared Redis runs the write script
        got = dict(zip(values, await cache.get_many(list(values))))
        assert got["plain"] == values["plain"] and got["none"] == values["none"]
        assert got["nan"]["p_yes"] != got["nan"]["p_yes"]  # NaN, not None
        assert got["inf"] == {"scores": [float("inf"), -float("inf")], "text": "null"}
        assert got["text"] == {"reference": {"text": "Größe ≤ 5 — naïve", "tags": ["a", "b"]}, "n": 2**70}
        raw = redis.Redis.from_url(REDIS_URL)
        try:
            for key, value in values.items():  # every stored text is JSON the standard library reads
                stored = json.loads(raw.get(redis_namespace + key))
                assert json.dumps(stored, sort_keys=True) == json.dumps(json.loads(json.dumps(value)), sort_keys=True)
                assert 0 < raw.pttl(redis_namespace + key) <= 30_000
            raw.set(redis_namespace + "old", json.dumps({"met": True, "p_yes": float("nan")}, separators=(",", ":")))
        finally:
            raw.close()
        (old,) = await cache.get_many(["old"])
        assert old["met"] is True and old["p_yes"] != old["p_yes"]
    finally:
        await cache.aclose()


async def test_a_server_that_refuses_scripts_gets_pipelined_sets(private_redis):
    """An ACL user without @scripting: the first write falls back to pipelined SETs and stays
    there; entries and TTLs are as with the script."""
    url, _process = private_redis
    admin = redis.Redis.from_url(url)
    admin.acl_setuser("noscripts", enabled=True, nopass=True, keys=["*"], commands=["+@all", "-@scripting"])
    admin.close()
    cache = RedisCache(url.replace("redis://", "redis://noscripts@"), "cat-test:")
    try:
        await cache.set_many({"verdict:a": {"met": True}, "verdict:b": {"met": False}}, ttl_s=30)
        assert cache.scripts is False
        await cache.set_many({"verdict:c": {"met": True}}, ttl_s=30)
        assert await cache.get_many(["verdict:a", "verdict:b", "verdict:c", "verdict:d"]) == [
            {"met": True}, {"met": False}, {"met": True}, None
        ]
        check = redis.Redis.from_url(url)
        assert all(0 < check.pttl(f"cat-test:verdict:{k}") <= 30_000 for k in "abc")
        check.close()
    finally:
        await cache.aclose()


async def test_a_failed_scripted_write_is_an_error_not_a_fallback(private_redis):
    """A write the server refuses for another reason (here: out of memory) reaches the caller,
    so ResilientCache counts it; the cache keeps using the script."""
    url, _process = private_redis
    admin = redis.Redis.from_url(url)
    admin.config_set("maxmemory", "1")  # every write is refused with OOM
    cache = RedisCache(url, "cat-test:")
    try:
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            await cache.set_many({"verdict:a": {"met": True}}, ttl_s=30)
        assert cache.scripts is True
    finally:
        admin.config_set("maxmemory", "0")
        admin.close()
        await cache.aclose()
