"""API keys with scopes, and a rate limit per key.

Keys come from ``CAT_API_KEYS`` (``KEY:SCOPE[+SCOPE...]`` entries, comma-separated) and/or
``CAT_API_KEYS_FILE`` (one ``sha256:<hex digest of the key> SCOPE[+SCOPE...] [name]`` per line,
``#`` comments; ``cat-reward hash-key`` prints such a line). Scopes: ``rewards`` for trainers,
``audit`` for reading the history, ``admin`` for everything. Only digests are kept in memory.

Open mode (no keys) must be asked for with ``CAT_AUTH=open``: ``cat-reward serve`` refuses to
start otherwise (``cat-reward up``, the local quick start on 127.0.0.1, asks for it itself).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from pathlib import Path

SCOPES = frozenset({"rewards", "audit", "admin"})
_FILE_LINE = re.compile(r"^sha256:(?P<digest>[0-9a-f]{64})\s+(?P<scopes>[a-z+]+)(?:\s+(?P<name>\S+))?$")


class AuthConfigError(ValueError):
    """The key configuration is unusable; the message says which entry and why."""


@dataclass(frozen=True)
class ApiKey:
    digest: str
    scopes: frozenset[str]
    name: str

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _scopes(text: str, where: str) -> frozenset[str]:
    scopes = frozenset(s for s in text.split("+") if s)
    unknown = scopes - SCOPES
    if not scopes or unknown:
        raise AuthConfigError(f"{where}: scopes must be some of {sorted(SCOPES)} joined by '+', got {text!r}")
    return scopes


def parse_env_keys(value: str) -> list[ApiKey]:
    keys = []
    for number, entry in enumerate((e.strip() for e in value.split(",")), 1):
        if not entry:
            continue
        key, sep, scopes = entry.rpartition(":")
        if not sep or not key:
            raise AuthConfigError(f"CAT_API_KEYS entry {number}: expected KEY:SCOPE[+SCOPE...]")
        keys.append(ApiKey(digest(key), _scopes(scopes, f"CAT_API_KEYS entry {number}"), f"env-{number}"))
    return keys


def parse_keys_file(path: Path) -> list[ApiKey]:
    keys = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise AuthConfigError(f"cannot read CAT_API_KEYS_FILE {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _FILE_LINE.match(line)
        if not match:
            raise AuthConfigError(f"{path}:{number}: expected 'sha256:<64 hex> SCOPE[+SCOPE...] [name]'")
        scopes = _scopes(match["scopes"], f"{path}:{number}")
        keys.append(ApiKey(match["digest"], scopes, match["name"] or f"{path.name}-{number}"))
    return keys


class KeyStore:
    def __init__(self, keys: list[ApiKey]) -> None:
        self._by_digest = {k.digest: k for k in keys}

    def keys(self) -> list[ApiKey]:
        """Every configured key (digests and scopes; never a plain key)."""
        return list(self._by_digest.values())

    def authenticate(self, token: str) -> ApiKey | None:
        wanted = digest(token)
        for candidate, key in self._by_digest.items():  # constant-time per comparison
            if hmac.compare_digest(candidate, wanted):
                return key
        return None


def _env_keys(settings) -> str:
    return settings.api_keys.get_secret_value().strip() if settings.api_keys is not None else ""


def load_keys(settings) -> KeyStore | None:
    """The configured keys, or None for open mode. Raises AuthConfigError on a contradiction."""
    keys = []
    if _env_keys(settings):
        keys += parse_env_keys(_env_keys(settings))
    if settings.api_keys_file is not None:
        keys += parse_keys_file(settings.api_keys_file)
    if settings.auth == "open":
        if keys:
            raise AuthConfigError("CAT_AUTH=open contradicts the configured API keys; drop one")
        return None
    if settings.auth == "keys" and not keys:
        raise AuthConfigError("CAT_AUTH=keys but no keys: set CAT_API_KEYS or CAT_API_KEYS_FILE")
    return KeyStore(keys) if keys else None


def open_mode_unrequested(settings) -> bool:
    """No keys and no explicit CAT_AUTH=open: a server must not start like this."""
    return settings.auth is None and not _env_keys(settings) and settings.api_keys_file is None


# Atomically: the key's count in this minute and the last, and one more hit only when the
# sliding estimate leaves room for it (refused hits are not counted, so a client that waits as
# told gets in). KEYS: this window's key, the last window's; ARGV: limit, fraction of this
# window gone, expiry seconds. Returns {admitted 0/1, last window's count, this window's count}.
_SLIDING_HIT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local estimate = previous * (1 - tonumber(ARGV[2])) + current
if estimate + 1 <= tonumber(ARGV[1]) then
  current = redis.call('INCR', KEYS[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  return {1, previous, current}
end
return {0, previous, current}
"""


def sliding_wait(limit: int, previous: int, current: int, elapsed_s: float, window_s: float = 60.0) -> float:
    """Seconds until a sliding-window estimate (``previous`` weighted by the part of the last
    window still inside the sliding minute, plus ``current``) leaves room for one more hit,
    assuming no other hits meanwhile."""
    fraction = elapsed_s / window_s
    if previous * (1 - fraction) + current + 1 <= limit:
        return 0.0
    remaining = window_s - elapsed_s
    if previous > 0 and current + 1 <= limit:  # the last window's share decays within this one
        t = window_s * (1 - fraction - (limit - 1 - current) / previous)
        if t <= remaining:
            return max(0.0, t)
    # Only in the next window: this window's count becomes the decaying one.
    s = window_s * (1 - (limit - 1) / current) if current > 0 else 0.0
    return remaining + max(0.0, s)


class RateLimiter:
    """A sliding one-minute window per key (the last minute's count weighted by how much of it
    still lies inside the sliding minute, plus this minute's count), so a burst across a minute
    boundary cannot pass twice the limit. In Redis when configured (shared by replicas, one Lua
    script per hit), else in this process. Returns the seconds to wait when over the limit;
    refused requests do not count."""

    def __init__(
        self, per_minute: int, redis_url: str | None = None, namespace: str = "cat:v1:", clock=time.time
    ) -> None:
        self.per_minute = per_minute
        self._counts: dict[tuple[str, int], int] = {}
        self._redis = None
        self._script = None
        self._ns = namespace + "rate:"
        self._clock = clock
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            self._script = self._redis.register_script(_SLIDING_HIT)

    async def hit(self, who: str) -> float | None:
        now = self._clock()
        window = int(now // 60)
        elapsed = now - window * 60
        if self._redis is not None:
            keys = [f"{self._ns}{who}:{window}", f"{self._ns}{who}:{window - 1}"]
            try:
                admitted, previous, current = await self._script(keys=keys, args=[self.per_minute, elapsed / 60, 130])
            except Exception:  # noqa: BLE001 - a dead Redis must not stop rewards: count locally
                admitted, previous, current = self._local(who, window, elapsed)
        else:
            admitted, previous, current = self._local(who, window, elapsed)
        if admitted:
            return None
        return max(1.0, sliding_wait(self.per_minute, int(previous), int(current), elapsed))

    def _local(self, who: str, window: int, elapsed: float) -> tuple[int, int, int]:
        for stale in [k for k in self._counts if k[1] < window - 1]:
            del self._counts[stale]
        current = self._counts.get((who, window), 0)
        previous = self._counts.get((who, window - 1), 0)
        if previous * (1 - elapsed / 60) + current + 1 <= self.per_minute:
            current += 1
            self._counts[(who, window)] = current
            return 1, previous, current
        return 0, previous, current

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
