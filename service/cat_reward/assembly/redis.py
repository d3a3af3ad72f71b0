"""Redis assembly store: every replica sees the same groups. Multi-key updates run as Lua
scripts, so two replicas adding samples or claiming a group at once cannot interleave."""

from __future__ import annotations

import json
import time

import redis.asyncio as aioredis

from .base import Added, StoreConflict, StoreFull

_ADD = """
local meta, samples = KEYS[1], KEYS[2]
local size = tonumber(ARGV[2])
if redis.call('EXISTS', meta) == 0 then
  redis.call('HSET', meta, 'spec', ARGV[1], 'size', size, 'created_at', ARGV[3], 'attempt', 0)
end
local have = tonumber(redis.call('HGET', meta, 'size'))
if have ~= size then
  return {'conflict', 'group size is ' .. have .. ', this request says ' .. size}
end
local n = tonumber(ARGV[5])
for i = 0, n - 1 do
  local idx, rollout = ARGV[6 + 2 * i], ARGV[7 + 2 * i]
  if idx ~= '' then
    local held = redis.call('HGET', samples, idx)
    if held and held ~= rollout then
      return {'conflict', 'index ' .. idx .. ' already holds a different rollout'}
    end
  end
end
local out = {}
for i = 0, n - 1 do
  local idx, rollout = ARGV[6 + 2 * i], ARGV[7 + 2 * i]
  if idx == '' then
    if redis.call('HLEN', samples) >= size then
      -- a full group: a sample without an index can only be a retry of one it holds
      local all = redis.call('HGETALL', samples)
      for j = 1, #all, 2 do
        if all[j + 1] == rollout then idx = all[j] break end
      end
      if idx == '' then return {'full', 'the group already has its ' .. size .. ' samples'} end
    else
      local j = 0
      while redis.call('HEXISTS', samples, tostring(j)) == 1 do j = j + 1 end
      idx = tostring(j)
    end
  end
  redis.call('HSET', samples, idx, rollout)
  out[#out + 1] = idx
end
redis.call('PEXPIRE', meta, ARGV[4])
redis.call('PEXPIRE', samples, ARGV[4])
local head = {'ok', tostring(redis.call('HLEN', samples)), redis.call('HGET', meta, 'attempt'),
              redis.call('HGET', meta, 'created_at')}
for _, idx in ipairs(out) do head[#head + 1] = idx end
return head
"""

_CLAIM = """
if tonumber(redis.call('HGET', KEYS[1], 'attempt')) ~= tonumber(ARGV[1]) then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

_FINISH = """
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
if ARGV[1] == '0' then redis.call('HINCRBY', KEYS[1], 'attempt', 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[4], ARGV[3])
return 1
"""


_ADVANCE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current == tonumber(ARGV[1]) then
  current = current + 1
  redis.call('SET', KEYS[1], current, 'PX', ARGV[2])
end
return current
"""


def _ms(seconds: float) -> str:
    return str(max(1, int(seconds * 1000)))


POOL_CONNECTIONS = 100  # redis-py's default pool size
POOL_WAIT_S = 60.0  # longest wait for a free connection before the call fails


class RedisAssemblyStore:
    def __init__(self, url: str, namespace: str) -> None:
        self._ns = namespace + "asm:"
        # A blocking pool: in a step's burst (S x G samples at once, measured with `cat-reward
        # loadtest --mode sample`) redis-py's default pool of 100 connections raised
        # MaxConnectionsError (HTTP 500); now a sample waits for a free connection instead.
        self._redis = aioredis.Redis.from_pool(  # closes the pool on aclose()
            aioredis.BlockingConnectionPool.from_url(
                url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_S,
                decode_responses=True, socket_timeout=5, socket_connect_timeout=5,
            )
        )
        self._add = self._redis.register_script(_ADD)
        self._claim = self._redis.register_script(_CLAIM)
        self._finish = self._redis.register_script(_FINISH)
        self._advance = self._redis.register_script(_ADVANCE)

    def _keys(self, key: str) -> dict[str, str]:
        base = self._ns + key
        return {n: f"{base}:{n}" for n in ("meta", "samples", "claim", "result", "idem")}

    async def add(self, key, spec, size, samples, ttl_s) -> Added:
        k = self._keys(key)
        args: list[str] = [json.dumps(spec), str(size), repr(time.time()), _ms(ttl_s), str(len(samples))]
        for index, rollout in samples:
            args += ["" if index is None else str(index), rollout]
        reply = await self._add(keys=[k["meta"], k["samples"]], args=args)
        if reply[0] == "full":
            raise StoreFull(reply[1])
        if reply[0] == "conflict":
            raise StoreConflict(reply[1])
        return Added(
            indices=[int(i) for i in reply[4:]],
            received=int(reply[1]),
            size=size,
            attempt=int(reply[2]),
            created_at=float(reply[3]),
        )

    async def received(self, key):
        return int(await self._redis.hlen(self._keys(key)["samples"]))

    async def claim(self, key, attempt, lease_s):
        k = self._keys(key)
        return bool(await self._claim(keys=[k["meta"], k["claim"]], args=[str(attempt), _ms(lease_s)]))

    async def snapshot(self, key):
        k = self._keys(key)
        spec_json = await self._redis.hget(k["meta"], "spec")
        samples = await self._redis.hgetall(k["samples"])
        return (json.loads(spec_json) if spec_json else {}), {int(i): r for i, r in samples.items()}

    async def finish(self, key, attempt, result, ok, ttl_s):
        k = self._keys(key)
        payload = json.dumps({**result, "attempt": attempt, "ok": ok})
        await self._finish(
            keys=[k["meta"], k["claim"], k["result"], k["samples"]], args=["1" if ok else "0", payload, _ms(ttl_s)]
        )

    async def result(self, key):
        raw = await self._redis.get(self._keys(key)["result"])
        return json.loads(raw) if raw else None

    async def remember(self, key, idempotency_key, indices, ttl_s):
        k = self._keys(key)["idem"]
        await self._redis.hsetnx(k, idempotency_key, json.dumps(indices))
        await self._redis.pexpire(k, int(_ms(ttl_s)))
        return json.loads(await self._redis.hget(k, idempotency_key))

    async def recall(self, key, idempotency_key):
        raw = await self._redis.hget(self._keys(key)["idem"], idempotency_key)
        return json.loads(raw) if raw else None

    async def generation(self, key):
        return int(await self._redis.get(self._ns + "gen:" + key) or 0)

    async def advance_generation(self, key, expected, ttl_s):
        return int(await self._advance(keys=[self._ns + "gen:" + key], args=[str(expected), _ms(ttl_s)]))

    async def aclose(self):
        await self._redis.aclose()
