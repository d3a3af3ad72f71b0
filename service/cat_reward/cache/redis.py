"""Redis cache: JSON values under namespaced, versioned keys, one round trip per batch: MGET to
read, and to write one call of a short Lua script that runs ``SET key value PX ttl`` for every
entry. Short socket timeouts: a slow or dead Redis must not stall rewards (``ResilientCache``
then serves without it).

Why a script and orjson: a rubric group writes G x n verdicts and its canaries (72 entries at
G=8, n=8). Written as a pipeline of 72 SETs, redis-py's per-command work made the cache 2.2 ms
(16 groups at once) to 3.1 ms (one at a time) of CPU per group against a local Redis; one
script call per write makes it 1.1-1.6 ms (``bench/redis_cache.py``). orjson takes the standard
library's place in both directions, hiredis parses the replies. A server that refuses scripts
(an ACL without ``@scripting``, a proxy without EVALSHA) gets the pipeline, as before.

What is stored reads back as the standard library's JSON would: orjson writes the same values
(floats in their shortest form, non-ASCII characters as UTF-8); a value orjson cannot take, or
one that may hold a NaN or infinity (orjson would write ``null``), is written by the standard
library as it always was, and read back by it.
"""

from __future__ import annotations

import json
import logging

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, ResponseError

log = logging.getLogger("cat_reward.cache")

# KEYS: the namespaced keys; ARGV: their values in the same order, then the TTL in milliseconds.
SET_ALL = "local px = ARGV[#ARGV] for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'PX', px) end return #KEYS"


def encode(value: dict) -> bytes:
    """Compact JSON that the standard library reads back as ``value``."""
    try:
        data = orjson.dumps(value)
        if b"null" not in data:  # else a None, or a NaN / infinity orjson wrote as null
            return data
    except TypeError:  # not a JSON type orjson knows (a subclass, a big integer)
        pass
    return json.dumps(value, separators=(",", ":")).encode()


def decode(raw: bytes) -> object:
    """``ValueError`` for what is not JSON; NaN and Infinity read as the standard library reads them."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _refused(exc: ResponseError) -> bool:
    """Whether the server refused to run scripts at all (ACL, or no such command), rather than
    failing this write."""
    return isinstance(exc, NoPermissionError) or "unknown command" in str(exc).lower()


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
        self._set_all = self._redis.register_script(SET_ALL)
        self.scripts = True  # False once the server refused the script: pipelined SETs from then on

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
                decoded = decode(value)
            except ValueError:
                decoded = None
            found.append(decoded if isinstance(decoded, dict) else None)
        return found

    async def set_many(self, items: dict[str, dict], ttl_s: float) -> None:
        if not items:
            return
        namespace, px = self._namespace, max(1, int(ttl_s * 1000))
        keys = [namespace + key for key in items]
        values = [encode(value) for value in items.values()]
        if self.scripts:
            try:
                await self._set_all(keys=keys, args=[*values, px])
                return
            except ResponseError as exc:
                if not _refused(exc):  # a failed write (out of memory, ...): ResilientCache hears of it
                    raise
                self.scripts = False  # scripts not allowed here: the pipeline does the same
                log.warning("Redis refused the cache's write script (%s); writing with pipelined SETs", exc)
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, value in zip(keys, values):
                pipe.set(key, value, px=px)
            await pipe.execute()

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.aclose()
