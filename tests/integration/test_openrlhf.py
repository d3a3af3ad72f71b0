"""POST /openrlhf/reward as OpenRLHF (>= 0.9.1) uses it: one sample per request, sent as soon as
it is generated, for several prompts at once, the same prompts again next epoch. In-process
app, scripted anchor and judge; the assembly state in-process or in the real Redis."""

from __future__ import annotations

import asyncio
import random
import uuid

import httpx
import pytest

from cat_reward.api import create_app
from cat_reward.api.routes.openrlhf import _series
from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.engine import LLMUnavailable
from cat_reward.engine.ports import EquivalenceResult, Roles
from cat_reward.settings import Settings
from tests.unit.scripts import anchor_script, judge_script, response_of

from .conftest import REDIS_URL

pytestmark = pytest.mark.anyio

G = 4
TEMPLATE = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
QUESTIONS = ["What is 2 + 3?", "Compute 10 - 5.", "Half of ten, as a number?"]
# The judge says yes exactly when the response contains a 5, so every reward is known.
EPOCH_1 = ["\\boxed{5}", "it is 6", "five is 5", "no idea"]
EPOCH_2 = ["\\boxed{5}", "it is 7", "5", "maybe 4"]  # "\\boxed{5}" again: the same text, a new sample


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference.strip() == candidate.strip())


class Service:
    def __init__(self, settings: Settings, judge=None):
        self.anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
        self.judge = ScriptedLLM(judge or judge_script(lambda r, c: "5" in r), role="judge", model="j")
        self.app = create_app(settings, roles=Roles(anchor=self.anchor, judge=self.judge), checker=ExactChecker(),
                              with_history=False)

    async def __aenter__(self):
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test", timeout=60)
        return self

    async def __aexit__(self, *exc):
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)

    def calls(self, stage: str) -> int:
        return sum(1 for c in self.anchor.calls if c.stage == stage)

    async def generation(self, question: str) -> int:
        """The prompt's current rolling-group generation in the assembly store."""
        store = self.app.state.services.samples.assembler.store
        return await store.generation(_series(TEMPLATE.format(q=question), "rubric"))


@pytest.fixture(params=["memory", "redis"])
def settings_for(request, redis_namespace, tmp_path):
    def make(**overrides) -> Settings:
        common = dict(data_dir=tmp_path, group_deadline_s=30, openrlhf_group_size=G, default_mode="rubric", **overrides)
        if request.param == "redis":
            return Settings(redis_url=REDIS_URL, cache_prefix=redis_namespace.rstrip(":"), **common)
        return Settings(**common)

    return make


def unique_questions() -> list[str]:
    # The Redis store outlives one test: prompts of this test's own.
    tag = uuid.uuid4().hex[:6]
    return [f"{q} [{tag}]" for q in QUESTIONS]


def one_sample(question: str, response: str, label: str | None = None) -> dict:
    """What OpenRLHF's SingleTurnAgentExecutor posts for one generated sample."""
    prompt = TEMPLATE.format(q=question)
    return {"query": [prompt + response + "<|im_end|>"], "prompts": [prompt], "labels": [label]}


async def test_one_sample_per_request_two_epochs(settings_for):
    async with Service(settings_for(openrlhf_retry_window_s=0)) as s:
        questions = unique_questions()
        for epoch, responses in enumerate((EPOCH_1, EPOCH_2), start=1):
            samples = [(q, r) for q in questions for r in responses]
            random.Random(epoch).shuffle(samples)  # generations finish in any order
            replies = await asyncio.gather(*[s.client.post("/openrlhf/reward", json=one_sample(q, r)) for q, r in samples])
            assert [r.status_code for r in replies] == [200] * len(samples), [r.text for r in replies if r.status_code != 200]
            for (question, response), reply in zip(samples, replies):
                body = reply.json()
                expected = 1.0 if "5" in response else 0.0
                assert body["rewards"] == [expected] and body["scores"] == [expected]
                assert body["extra_logs"] == {"cat_group_scored": [G], "cat_partial_group": [0.0]}
            # Exactly one synthesis and one rubric per group: 3 prompts, one group each per epoch.
            assert s.calls("synthesis") == len(questions) * epoch
            assert s.calls("rubric") == len(questions) * epoch
            assert [await s.generation(q) for q in questions] == [epoch - 1] * len(questions)
        # The judge saw the responses without the prompt and without the trailing special token.
        judged = {response_of(c) for c in s.judge.calls}
        assert judged == set(EPOCH_1) | set(EPOCH_2)


async def test_a_batch_request_is_grouped_the_same_way(settings_for):
    async with Service(settings_for()) as s:
        questions = unique_questions()[:2]
        samples = [(q, r) for r in EPOCH_1 for q in questions]  # interleaved, as an old OpenRLHF chunk could be
        prompts = [TEMPLATE.format(q=q) for q, _ in samples]
        reply = await s.client.post(
            "/openrlhf/reward",
            json={"query": [p + r + "<|im_end|>" for p, (_, r) in zip(prompts, samples)], "prompts": prompts,
                  "labels": [""] * len(samples)},
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["rewards"] == [1.0 if "5" in r else 0.0 for _, r in samples]
        assert s.calls("synthesis") == 2 and s.calls("rubric") == 2


async def test_a_label_is_the_reference(settings_for):
    async with Service(settings_for()) as s:
        (question,) = unique_questions()[:1]
        replies = await asyncio.gather(
            *[s.client.post("/openrlhf/reward", json=one_sample(question, r, label="5")) for r in EPOCH_1]
        )
        assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
        assert s.calls("synthesis") == 0 and s.calls("rubric") == 1
        rubric_call = next(c for c in s.anchor.calls if c.stage == "rubric")
        assert "5" in rubric_call.messages[-1]["content"]


async def test_a_prompt_that_is_not_a_prefix_is_a_422(settings_for):
    async with Service(settings_for()) as s:
        body = one_sample("What is 2 + 3?", "5")
        body["prompts"] = [TEMPLATE.format(q="What is 2 + 4?")]
        reply = await s.client.post("/openrlhf/reward", json=body)
        assert reply.status_code == 422
        error = reply.json()["error"]
        assert error["type"] == "invalid_request" and error["param"] == "query.0" and "prefix" in error["message"]
        mismatch = await s.client.post("/openrlhf/reward", json={"query": ["a", "b"], "prompts": ["a"]})
        assert mismatch.status_code == 422 and mismatch.json()["error"]["param"] == "prompts"
        assert s.anchor.calls == []


async def test_a_reward_that_cannot_be_computed_is_an_error_not_a_zero(settings_for):
    # The judge never answers "no idea" with yes or no: that rollout's reward is null.
    async with Service(settings_for(), judge=judge_script(lambda r, c: "maybe" if r == "no idea" else "5" in r)) as s:
        (question,) = unique_questions()[:1]
        replies = await asyncio.gather(*[s.client.post("/openrlhf/reward", json=one_sample(question, r)) for r in EPOCH_1])
        by_response = dict(zip(EPOCH_1, replies))
        assert by_response["no idea"].status_code == 502
        assert by_response["no idea"].json()["error"]["type"] == "reward_unavailable"
        assert all(by_response[r].status_code == 200 for r in EPOCH_1 if r != "no idea")
        # OpenRLHF retries the same request: the same sample of the same group, no new LLM call.
        calls = len(s.anchor.calls) + len(s.judge.calls)
        again = await s.client.post("/openrlhf/reward", json=one_sample(question, "no idea"))
        assert again.status_code == 502 and len(s.anchor.calls) + len(s.judge.calls) == calls


async def test_a_group_that_failed_is_scored_again_on_retry(settings_for):
    state = {"down": True}
    base = judge_script(lambda r, c: "5" in r)

    def judge(request):
        if state["down"]:
            raise LLMUnavailable("judge down", role="judge", retry_after=1)
        return base(request)

    async with Service(settings_for(), judge=judge) as s:
        (question,) = unique_questions()[:1]
        first = await asyncio.gather(*[s.client.post("/openrlhf/reward", json=one_sample(question, r)) for r in EPOCH_1])
        assert [r.status_code for r in first] == [503] * G
        state["down"] = False
        retried = await asyncio.gather(*[s.client.post("/openrlhf/reward", json=one_sample(question, r)) for r in EPOCH_1])
        assert [r.status_code for r in retried] == [200] * G, [r.text for r in retried]
        assert [r.json()["rewards"][0] for r in retried] == [1.0, 0.0, 1.0, 0.0]
        assert s.calls("synthesis") == 1
        assert await s.generation(question) == 0  # the same group scored again, not a new generation


async def test_a_partial_group_closes_its_generation(settings_for):
    async with Service(settings_for(openrlhf_deadline_s=0.5)) as s:
        (question,) = unique_questions()[:1]
        early = await asyncio.gather(*[s.client.post("/openrlhf/reward", json=one_sample(question, r)) for r in EPOCH_1[:2]])
        assert all(r.status_code == 200 and r.json()["extra_logs"]["cat_partial_group"] == [1.0] for r in early)
        # A later sample of the prompt is not "late" for the scored group: it opens the next generation
        # (where, alone until its deadline, it is too few to score).
        late = await s.client.post("/openrlhf/reward", json=one_sample(question, EPOCH_1[2]))
        assert late.status_code == 409 and late.json()["error"]["type"] == "group_incomplete"
        assert await s.generation(question) == 1


async def test_generation_advances_by_compare_and_set(settings_for):
    async with Service(settings_for()) as s:
        store = s.app.state.services.samples.assembler.store
        series = "test-series:" + uuid.uuid4().hex
        assert await store.generation(series) == 0
        # Ten samples find generation 0 full at once: all of them land on generation 1.
        assert await asyncio.gather(*[store.advance_generation(series, 0, 60) for _ in range(10)]) == [1] * 10
        assert await store.advance_generation(series, 0, 60) == 1  # a stale expectation moves nothing
        assert await store.advance_generation(series, 1, 60) == 2
        assert await store.generation(series) == 2
