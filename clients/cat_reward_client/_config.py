"""Client configuration: defaults, timeouts and the retry policy (pure data, no I/O)."""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass, field
from datetime import timezone

import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8000"

# A reward call runs an LLM pipeline (synthesis, rubric, one verdict per rollout x criterion)
# and can take minutes under load: wait long for the answer, fail fast on a dead host.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=600.0)

NEVER_RETRIED_STATUSES = frozenset({422})


def make_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    """A float sets every timeout but ``connect``, which keeps its 10 s default; ``None`` waits forever."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is None:
        return httpx.Timeout(None)
    return httpx.Timeout(float(timeout), connect=min(float(timeout), DEFAULT_TIMEOUT.connect or 10.0))


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a call again.

    Retried: connection errors (refused, reset, dropped), the statuses in ``retry_statuses``
    (429 and 503 by default) and, only when ``retry_read_timeouts`` is set, read timeouts
    (off by default: the server may still be working on the call). A 422 is never retried.

    The wait is the server's ``Retry-After`` (header, else ``error.retry_after``), capped at
    ``retry_after_max`` and spread by up to 10 %; without one, exponential backoff from
    ``backoff_initial`` doubling up to ``backoff_max``, with "equal jitter" (between half
    and all of the step).
    """

    max_retries: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))
    retry_read_timeouts: bool = False

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff_initial < 0 or self.backoff_max < 0 or self.retry_after_max < 0:
            raise ValueError("backoff and retry_after limits must be >= 0")
        statuses = frozenset(int(s) for s in self.retry_statuses)
        bad = statuses & NEVER_RETRIED_STATUSES
        if bad:
            raise ValueError(f"status {sorted(bad)} is never retried: the request is invalid as sent")
        object.__setattr__(self, "retry_statuses", statuses)

    def backoff(self, retry_number: int, rand: float) -> float:
        """Delay before retry ``retry_number`` (1-based) when the server gave no Retry-After."""
        step = min(self.backoff_max, self.backoff_initial * (2 ** max(0, retry_number - 1)))
        return step / 2 + rand * step / 2

    def retry_after_delay(self, retry_after: float, rand: float) -> float:
        """Delay honouring the server's Retry-After: at least what it asked, capped."""
        base = min(max(0.0, retry_after), self.retry_after_max)
        return min(self.retry_after_max, base * (1 + 0.1 * rand))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date. ``None`` if unusable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # an HTTP date is GMT
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
