"""A step's burst on Redis: more concurrent callers than redis-py's default pool (100
connections). Found with `cat-reward loadtest --mode sample` (256 groups x 8 samples at once):
the default pool raised MaxConnectionsError and the samples got HTTP 500."""

from __future__ import annotations

import asyncio

import pytest

from cat_reward.assembly.redis import RedisAssemblyStore
from cat_reward.cache.redis import RedisCache

from .conftest import REDIS_URL

CALLERS = 400


@pytest.mark.anyio
async def test_the_assembly_store_takes_a_burst_of_samples(redis_namespace):
    store = RedisAssemblyStore(REDIS_URL, redis_namespace)
    try:
        added = await asyncio.gather(*(
            store.add(f"group-{k // 8}", {"mode": "rubric"}, 8, [(k % 8, f"rollout {k}")], 600.0) for k in range(CALLERS)
        ))
        assert len(added) == CALLERS
        received = await asyncio.gather(*(store.received(f"group-{g}") for g in range(CALLERS // 8)))
        assert received == [8] * (CALLERS // 8)
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_the_cache_takes_a_burst_of_reads_and_writes(redis_namespace):
    cache = RedisCache(REDIS_URL, redis_namespace, timeout_s=5.0)
    try:
        await asyncio.gather(*(cache.set_many({f"k{k}": {"v": k}}, ttl_s=60) for k in range(CALLERS)))
        found = await asyncio.gather(*(cache.get_many([f"k{k}"]) for k in range(CALLERS)))
        assert [f[0] for f in found] == [{"v": k} for k in range(CALLERS)]
    finally:
        await cache.aclose()
