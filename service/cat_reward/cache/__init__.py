"""Cache adapters for the engine's ``Cache`` port: in-process (the embedded default) and Redis,
both behind ``ResilientCache``, which turns any failure into a miss and says so."""

from .memory import MemoryCache
from .redis import RedisCache
from .resilient import ResilientCache

CACHE_SCHEMA = "v1"  # bump when the shape of cached entries changes


def key_namespace(prefix: str) -> str:
    """``<prefix>:<schema>:``, e.g. ``cat:v1:``; every key the service writes starts with it."""
    return f"{prefix}:{CACHE_SCHEMA}:"

__all__ = ["CACHE_SCHEMA", "key_namespace", "MemoryCache", "RedisCache", "ResilientCache"]
