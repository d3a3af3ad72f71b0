"""OpenRLHF's remote reward client, re-implemented here from its documented behaviour (current
``openrlhf/utils/agent.py``, ``SingleTurnAgentExecutor``) so tests can play it against the service.

What it does, and what this module does the same way:

- every generated sample is scored on its own, as soon as it is generated: one call of
  ``fetch_rewards([query], [prompt], [label])`` per sample, many of them concurrently;
- a call splits its lists over the reward URLs in contiguous chunks of ``ceil(len / n_urls)``:
  with one sample the first URL gets it and every other URL gets ``{"query": [], "prompts": [],
  "labels": []}``;
- each URL is POSTed (aiohttp, a new session per try, 180 s total timeout) up to 5 times, 1 s
  apart, on any error including a non-2xx status; after the 5th failure it raises;
- the posts of one call run under ``asyncio.gather``: one URL that keeps failing raises out of
  the gather, the executor logs it and the sample keeps ``reward = None``;
- only the first URL's answer is used for the sample.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import aiohttp

TRIES = 5
PAUSE_S = 1.0
TIMEOUT_S = 180.0


@dataclass
class SampleOutcome:
    reward: float | None = None
    scores: float | None = None
    extra_logs: dict = field(default_factory=dict)
    error: str | None = None  # what the executor would have logged


class OpenRLHFRewardClient:
    def __init__(self, urls: list[str], *, tries: int = TRIES, pause_s: float = PAUSE_S) -> None:
        if not urls:
            raise ValueError("at least one reward URL")
        self.urls = list(urls)
        self.tries = tries
        self.pause_s = pause_s
        self.posts: list[tuple[str, int]] = []  # (url, number of queries) of every POST tried

    async def _post(self, url: str, payload: dict) -> dict:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        for _ in range(self.tries):
            self.posts.append((url, len(payload["query"])))
            try:
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    async with session.post(url, json=payload) as response:
                        response.raise_for_status()
                        return await response.json()
            except Exception:  # noqa: BLE001 - OpenRLHF logs every error and tries again
                pass
            await asyncio.sleep(self.pause_s)
        raise RuntimeError(f"Request error for {self.tries} times at {url}")

    async def fetch_rewards(self, queries: list[str], prompts: list[str], labels: list) -> list[dict]:
        """One answer per URL, in URL order (``_fetch_rewards_via_http``)."""
        chunk = math.ceil(len(queries) / len(self.urls))
        tasks = []
        for i, url in enumerate(self.urls):
            part = slice(i * chunk, min((i + 1) * chunk, len(queries)))
            payload = {"query": queries[part], "prompts": prompts[part], "labels": labels[part]}
            tasks.append(asyncio.create_task(self._post(url, payload)))
        return await asyncio.gather(*tasks)

    async def score_sample(self, query: str, prompt: str, label) -> SampleOutcome:
        """What ``SingleTurnAgentExecutor.execute`` does after generating one sample."""
        try:
            answers = await self.fetch_rewards([query], [prompt], [label])
        except Exception as exc:  # noqa: BLE001 - the executor logs it; the reward stays None
            return SampleOutcome(error=str(exc))
        first = answers[0] if answers else None
        if not first:
            return SampleOutcome(error="no answer")
        return SampleOutcome(
            reward=first.get("rewards"),
            scores=first.get("scores") or first.get("rewards"),
            extra_logs=first.get("extra_logs") or {},
        )
