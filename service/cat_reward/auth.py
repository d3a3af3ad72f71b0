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


class RateLimiter:
    """A fixed one-minute window per key: in Redis when configured (shared by replicas), else
    in this process. Returns the seconds to wait when the key is over its limit."""

    def __init__(self, per_minute: int, redis_url: str | None = None, namespace: str = "cat:v1:") -> None:
        self.per_minute = per_minute
        self._counts: dict[tuple[str, int], int] = {}
        self._redis = None
        self._ns = namespace + "rate:"
        if redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)

    async def hit(self, who: str) -> float | None:
        now = time.time()
        window = int(now // 60)
        retry_after = 60 - (now % 60)
        if self._redis is not None:
            key = f"{self._ns}{who}:{window}"
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    pipe.expire(key, 120)
                    count, _ = await pipe.execute()
            except Exception:  # noqa: BLE001 - a dead Redis must not stop rewards: count locally
                count = self._local(who, window)
        else:
            count = self._local(who, window)
        return retry_after if count > self.per_minute else None

    def _local(self, who: str, window: int) -> int:
        for stale in [k for k in self._counts if k[1] < window]:
            del self._counts[stale]
        self._counts[(who, window)] = self._counts.get((who, window), 0) + 1
        return self._counts[(who, window)]

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
