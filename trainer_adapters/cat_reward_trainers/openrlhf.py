"""CaT rewards for OpenRLHF.

Two ways in:

1. HTTP, nothing to install on OpenRLHF's side: point ``--reward.remote_url`` (``--remote_rm_url``
   up to OpenRLHF 0.10.0) at the service's own endpoint, ``http://HOST:8000/openrlhf/reward``,
   and set ``CAT_OPENRLHF_GROUP_SIZE`` on the service to ``--rollout.n_samples_per_prompt``.

2. A ``.py`` path: ``--reward.remote_url /path/to/cat_reward_trainers/openrlhf.py`` makes
   OpenRLHF load ``reward_func(queries, prompts, labels, **kwargs)`` from this file and call it
   in a thread, one sample per call. It forwards to the same endpoint (``$CAT_REWARD_URL``,
   default http://127.0.0.1:8000), so grouping, rolling per-prompt groups and error handling are
   the service's, and returns the same dict: ``{"rewards", "scores", "extra_logs"}``.

A reward that cannot be computed is never returned as a number: the service answers 502 and
``reward_func`` raises, which OpenRLHF logs, leaving that sample without a reward.

This file imports only the standard library, so OpenRLHF can load it by path from any
environment; torch tensors in the answer are not needed (OpenRLHF accepts lists).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
ENDPOINT = "/openrlhf/reward"


class RewardServiceError(RuntimeError):
    """The service refused or failed the request; ``status`` and ``body`` say why."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _as_list(values: Any, n: int) -> list[Any]:
    if values is None:
        return [None] * n
    if hasattr(values, "tolist"):  # a tensor or an array
        values = values.tolist()
    return list(values)


def reward_func(queries: Any, prompts: Any, labels: Any = None, **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF's ``reward_func``: POST the samples to the service's OpenRLHF endpoint.

    Keyword arguments: ``base_url`` (default ``$CAT_REWARD_URL`` or http://127.0.0.1:8000),
    ``timeout`` (seconds, default ``$CAT_REWARD_TIMEOUT`` or 600), ``retries`` on 503 and
    connection errors (default 3). Other keywords OpenRLHF may add are ignored.
    """
    queries = _as_list(queries, 0)
    n = len(queries)
    body = {
        "query": [str(q) for q in queries],
        "prompts": [str(p) for p in _as_list(prompts, n)],
        "labels": [None if label is None else str(label) for label in _as_list(labels, n)],
    }
    base_url = kwargs.get("base_url") or os.environ.get("CAT_REWARD_URL") or DEFAULT_URL
    timeout = float(kwargs.get("timeout") or os.environ.get("CAT_REWARD_TIMEOUT") or 600)
    retries = int(kwargs.get("retries", 3))
    return post(base_url.rstrip("/") + ENDPOINT, body, timeout=timeout, retries=retries)


def post(url: str, body: dict[str, Any], *, timeout: float = 600.0, retries: int = 3) -> dict[str, Any]:
    """POST ``body`` as JSON; retry 503 (after Retry-After) and connection errors; raise on errors."""
    data = json.dumps(body).encode()
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                error = json.loads(text)
            except ValueError:
                error = text
            if exc.code == 503 and attempt < retries:
                time.sleep(min(float(exc.headers.get("Retry-After") or 2), 60))
                continue
            message = error.get("error", {}).get("message") if isinstance(error, dict) else text
            raise RewardServiceError(f"cat-reward answered {exc.code}: {message}", exc.code, error) from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if attempt < retries:
                time.sleep(2 ** attempt)
                continue
            raise RewardServiceError(f"cat-reward is unreachable at {url}: {exc}") from exc
        for key in ("rewards", "scores", "extra_logs"):
            if key not in answer:
                raise RewardServiceError(f"cat-reward answered without {key!r}", 200, answer)
        return answer
    raise AssertionError("unreachable")
