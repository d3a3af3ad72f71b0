"""Prometheus metrics of the service (names follow Prometheus conventions: units in the name,
``_total`` for counters)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CACHE_REQUESTS = Counter(
    "cat_cache_requests_total", "Cache look-ups by kind of entry and result.", ["kind", "result"]
)
CACHE_ERRORS = Counter("cat_cache_errors_total", "Cache operations that failed (served without the cache).", ["op"])
OUTBOX_DEPTH = Gauge("cat_history_outbox_depth", "Records waiting in the local outbox for the history database.")
HISTORY_WRITE_ERRORS = Counter("cat_history_write_errors_total", "Records that could not be written even to the outbox.")
ASSEMBLY_GROUPS = Counter(
    "cat_assembly_groups_total", "Assembled groups scored, by outcome (complete, partial, incomplete, failed).", ["outcome"]
)
ASSEMBLY_WAIT_SECONDS = Histogram(
    "cat_assembly_wait_seconds",
    "Time a per-sample request waited for its group to be scored.",
    buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
GROUPS_SCORED = Counter("cat_groups_scored_total", "Groups scored, by mode.", ["mode"])
ZERO_VARIANCE_GROUPS = Counter(
    "cat_zero_variance_groups_total", "Groups whose rewards were all equal (no GRPO advantage), by mode.", ["mode"]
)
DISCRIMINATING_CRITERIA = Histogram(
    "cat_discriminating_criteria",
    "Criteria per rubric group met by some rollouts but not all.",
    buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10, 16),
)
RUBRIC_REGENERATIONS = Counter("cat_rubric_regenerations_total", "Flat rubrics regenerated for discriminating criteria.")
