"""The local CPU judge survives concurrent seeded requests whose prompts do not fit one step.

vLLM 0.32 on CPU kills its engine ("CPU Generator does not use offset") when a seeded request's
prompt is split across scheduler steps; `cat-reward judge` therefore starts vLLM with whole-prompt
scheduling. Measured before the fix: this exact load answered 500 to all 12 requests and left the
engine dead; after it, 12 x 200."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from cat_reward import local_judge

pytestmark = pytest.mark.e2e


async def _seeded_burst(url: str) -> list[int]:
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "sum", "answer", "boxed", "step"]
    async with httpx.AsyncClient(timeout=600) as client:

        async def one() -> int:
            text = " ".join(rng.choice(words) for _ in range(rng.randint(250, 450)))
            response = await client.post(
                f"{url}/chat/completions",
                json={
                    "model": local_judge.SERVED_MODEL,
                    "messages": [{"role": "system", "content": "You are a careful grader of math responses."},
                                 {"role": "user", "content": text}],
                    "max_tokens": 64, "temperature": 0.7, "top_p": 0.95, "seed": 1,
                },
            )
            return response.status_code

        return await asyncio.gather(*(one() for _ in range(12)))


def test_concurrent_seeded_requests_do_not_kill_the_judge(judge_url):
    assert asyncio.run(_seeded_burst(judge_url)) == [200] * 12
    assert httpx.get(f"{judge_url}/models", timeout=10).status_code == 200  # the engine is alive
