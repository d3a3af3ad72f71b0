"""Redis cache: JSON values under namespaced, versioned keys, one round trip per batch
(MGET, and a pipelined SET ... PX). Short socket timeouts: a slow or dead Redis must not stall
rewards (``ResilientCache`` then serves without it)."""

from __future__ import annotations

import json

import redis.asyncio as aioredis


class RedisCache:
    def __init__(self, url: str, namespace: str, *, timeout_s: float = 0.5) -> None:
        self._namespace = namespace
        # A blocking pool: redis-py's default pool (100 connections) raises MaxConnectionsError
        # when a burst needs more; this one waits up to the socket timeout for a free connection.
        self._redis = aioredis.Redis.from_pool(  # closes the pool on aclose()
            aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=100,
                timeout=timeout_s,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry_on_timeout=False,
                health_check_interval=30,
            )
        )

    async def get_many(self, keys: list[str]) -> list[dict | None]:
        if not keys:
            return []
        raw = await self._redis.mget([self._namespace + k for k in keys])
        found: list[dict | None] = []
        for value in raw:
            if value is None:
                found.append(None)
                continue
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = None
            found.append(decoded if isinstance(decoded, dict) else None)
        return found

    async def set_many(self, items: dict[str, dict], ttl_s: float) -> None:
        if not items:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(self._namespace + key, json.dumps(value, separators=(",", ":")), px=max(1, int(ttl_s * 1000)))
            await pipe.execute()

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.aclose()
