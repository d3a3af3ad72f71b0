"""Prometheus metrics of the service (names follow Prometheus conventions: units in the name,
``_total`` for counters)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CACHE_REQUESTS = Counter(
    "cat_cache_requests_total", "Cache look-ups by kind of entry and result.", ["kind", "result"]
)
CACHE_ERRORS = Counter("cat_cache_errors_total", "Cache operations that failed (served without the cache).", ["op"])
OUTBOX_DEPTH = Gauge("cat_history_outbox_depth", "Records waiting in the local outbox for the history database.")
HISTORY_WRITE_ERRORS = Counter("cat_history_write_errors_total", "Records that could not be written even to the outbox.")
