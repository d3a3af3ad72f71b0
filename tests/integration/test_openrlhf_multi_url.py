"""OpenRLHF's reward client (tests/support/openrlhf_client.py) with 1, 2 and 4 reward URLs, over
real HTTP: every sample is sent on its own and concurrently, to the first URL, while every other
URL gets empty lists. Each URL is a service replica of its own (in-process app, scripted anchor
and judge, served by uvicorn on a free loopback port). Every sample must get its reward, and the
replicas that only saw empty lists must not have called an LLM."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
import uvicorn

from cat_reward.api import create_app
from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.engine.ports import EquivalenceResult, Roles
from cat_reward.settings import Settings
from tests.support.openrlhf_client import OpenRLHFRewardClient
from tests.support.service import free_port
from tests.unit.scripts import anchor_script, judge_script

pytestmark = pytest.mark.anyio

G = 4
TEMPLATE = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
RESPONSES = ["\\boxed{5}", "it is 6", "five is 5", "no idea"]  # the judge says yes exactly when a 5 is in it


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference.strip() == candidate.strip())


class Replica:
    def __init__(self, tmp_path, index: int) -> None:
        self.anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
        self.judge = ScriptedLLM(judge_script(lambda r, c: "5" in r), role="judge", model="j")
        settings = Settings(data_dir=tmp_path / f"r{index}", openrlhf_group_size=G, default_mode="rubric", group_deadline_s=30)
        app = create_app(settings, roles=Roles(anchor=self.anchor, judge=self.judge), checker=ExactChecker(), with_history=False)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"))
        self.url = f"http://127.0.0.1:{self.port}/openrlhf/reward"

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(200):
            if self.server.started:
                return
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.05)
        raise RuntimeError("replica did not start")

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, timeout=30)

    def llm_calls(self) -> int:
        return len(self.anchor.calls) + len(self.judge.calls)


@pytest.mark.parametrize("n_urls", [1, 2, 4])
async def test_every_sample_gets_its_reward(n_urls, tmp_path):
    replicas = [Replica(tmp_path, i) for i in range(n_urls)]
    for replica in replicas:
        await replica.start()
    try:
        client = OpenRLHFRewardClient([r.url for r in replicas])
        tag = uuid.uuid4().hex[:6]
        questions = [f"What is 2 + 3? [{tag}]", f"Compute 10 - 5. [{tag}]", f"Half of ten? [{tag}]"]
        samples = [(q, r) for q in questions for r in RESPONSES]
        random.Random(n_urls).shuffle(samples)  # generations finish in any order
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *[
                    client.score_sample(TEMPLATE.format(q=q) + r + "<|im_end|>", TEMPLATE.format(q=q), None)
                    for q, r in samples
                ]
            ),
            timeout=60,
        )
        for (question, response), outcome in zip(samples, outcomes):
            expected = 1.0 if "5" in response else 0.0
            assert outcome.error is None, (question, response, outcome.error)
            assert outcome.reward == [expected] and outcome.scores == [expected]
            assert outcome.extra_logs["cat_group_scored"] == [G]
        # No POST was retried: each URL was posted once per sample, the first with the sample.
        assert len(client.posts) == len(samples) * n_urls
        assert sorted({(url, n) for url, n in client.posts}) == sorted(
            {(replicas[0].url, 1)} | {(r.url, 0) for r in replicas[1:]}
        )
        # One synthesis per prompt on the first replica; the others answered without an LLM call.
        assert sum(1 for c in replicas[0].anchor.calls if c.stage == "synthesis") == len(questions)
        assert [r.llm_calls() for r in replicas[1:]] == [0] * (n_urls - 1)
    finally:
        for replica in replicas:
            await replica.stop()
