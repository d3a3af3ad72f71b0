"""Prometheus metrics of the service (names follow Prometheus conventions: units in the name,
``_total`` for counters).

Several uvicorn workers: ``cat-reward serve --workers N`` sets ``PROMETHEUS_MULTIPROC_DIR``
before the workers start, every worker writes its samples there, and ``/metrics`` (whichever
worker answers) aggregates all of them.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

HTTP_REQUESTS = Counter("cat_http_requests_total", "HTTP requests by route, method and status.", ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "cat_http_request_duration_seconds", "HTTP request latency by route.", ["route", "method"], buckets=LATENCY_BUCKETS
)
LLM_CALLS = Counter(
    "cat_llm_calls_total", "LLM calls by role (anchor, judge), stage and outcome (ok, error).", ["role", "stage", "outcome"]
)
LLM_TOKENS = Counter("cat_llm_tokens_total", "LLM tokens by role, stage and kind (prompt, completion).", ["role", "stage", "kind"])
LLM_LATENCY = Histogram(
    "cat_llm_call_duration_seconds", "Latency of one LLM call by role and stage.", ["role", "stage"], buckets=LATENCY_BUCKETS
)
REWARDS = Histogram(
    "cat_reward", "Computed rewards by mode (SCRL's -1 falls in the lowest bucket).", ["mode"],
    buckets=(-1, -0.5, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
UNCOMPUTED_REWARDS = Counter("cat_rewards_uncomputed_total", "Rollouts whose reward is null (explicit error), by mode.", ["mode"])
VERDICT_PARSE_FAILURES = Counter(
    "cat_verdict_parse_failures_total", "Verdicts still unparseable after every attempt (the rollout's reward is null)."
)
INJECTION_FLAGS = Counter(
    "cat_injection_flags_total",
    "Rollouts flagged as trying to buy their reward, by kind (the pattern kinds, and judge_persuaded from the canary).",
    ["kind"],
)
INJECTION_POLICY_ACTIONS = Counter(
    "cat_injection_policy_actions_total",
    "Flagged rollouts by the injection policy applied to them (zero, penalty, null, flag).",
    ["policy"],
)
JUDGE_UNRELIABLE_GROUPS = Counter(
    "cat_judge_unreliable_groups_total",
    "Groups whose judge said yes to the canary criterion for most rollouts (rewards left to the verdicts), by mode.",
    ["mode"],
)
VERDICT_RETRIES = Counter("cat_verdict_retries_total", "Extra judge calls made because a verdict did not parse.")

CACHE_REQUESTS = Counter(
    "cat_cache_requests_total", "Cache look-ups by kind of entry and result.", ["kind", "result"]
)
CACHE_ERRORS = Counter("cat_cache_errors_total", "Cache operations that failed (served without the cache).", ["op"])
OUTBOX_DEPTH = Gauge(
    "cat_history_outbox_depth",
    "Records waiting in the local outbox for the history database.",
    multiprocess_mode="livemax",  # the workers share one outbox file
)
HISTORY_WRITE_ERRORS = Counter("cat_history_write_errors_total", "Records that could not be written even to the outbox.")
ASSEMBLY_GROUPS = Counter(
    "cat_assembly_groups_total", "Assembled groups scored, by outcome (complete, partial, incomplete, failed).", ["outcome"]
)
ASSEMBLY_WAIT_SECONDS = Histogram(
    "cat_assembly_wait_seconds",
    "Time a per-sample request waited for its group to be scored.",
    buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
GROUPS_ACTIVE = Gauge("cat_groups_active", "Groups being scored now (summed over worker processes).", multiprocess_mode="livesum")
GROUPS_QUEUED = Gauge(
    "cat_groups_queued", "Admitted groups waiting for a scoring slot (summed over worker processes).", multiprocess_mode="livesum"
)
ADMISSION_REJECTIONS = Counter(
    "cat_admission_rejections_total",
    "Groups refused with 503 overloaded, by reason (queue_full: no room to wait; queue_timeout: waited too long).",
    ["reason"],
)
# The signals to autoscale on (README "Scaling"): judge prompts waiting in this process, requests
# in flight at each endpoint, and groups in progress. Summed over worker processes.
JUDGE_QUEUE_DEPTH = Gauge(
    "cat_reward_judge_queue_depth",
    "LLM prompts waiting in this service for a verdict batch slot or for room at an endpoint "
    "(CAT_LLM_ENDPOINT_MAX_INFLIGHT), by role.",
    ["role"],
    multiprocess_mode="livesum",
)
JUDGE_OUTSTANDING_REQUESTS = Gauge(
    "cat_reward_judge_outstanding_requests",
    "LLM requests in flight at each endpoint, by role and endpoint URL.",
    ["role", "endpoint"],
    multiprocess_mode="livesum",
)
INFLIGHT_GROUPS = Gauge(
    "cat_reward_inflight_groups",
    "Groups admitted and not yet answered (being scored or waiting for a scoring slot).",
    multiprocess_mode="livesum",
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


class LabelledChildren:
    """``metric.labels(*values)``, looked up once per label values: ``labels()`` checks names,
    converts every value to ``str`` and takes a lock on each call, a few microseconds per request
    for the HTTP metrics. The children are the ones ``labels()`` returns (same samples); the
    service never removes a child of these metrics, so a remembered child stays the exported one."""

    def __init__(self, metric) -> None:
        self.metric = metric
        self._children: dict[tuple, object] = {}

    def __call__(self, *values):
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


HTTP_REQUESTS_BY = LabelledChildren(HTTP_REQUESTS)  # (route, method, status)
HTTP_LATENCY_BY = LabelledChildren(HTTP_LATENCY)  # (route, method)


def render() -> tuple[bytes, str]:
    """The exposition of this process, or of every worker in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
