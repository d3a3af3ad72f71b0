"""The engine's verdict stage with a judge that scores yes/no as single tokens in batches:
verdicts, P(yes), usage, the chat fallback for tokens that are neither yes nor no, errors,
the cache, and the real HTTP client (against a fake vLLM) coalescing concurrent groups."""

import asyncio

import httpx
import pytest

from cat_reward.backends.openai_compat import OpenAICompatClient
from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.backends.scripted_scoring import ScriptedScoringLLM
from cat_reward.cache import MemoryCache
from cat_reward.engine import CaTPipeline, Group, GroupOptions, LLMRequestRejected, load_prompt_set
from cat_reward.engine.ports import EquivalenceResult, Roles

from .fake_vllm import FakeVLLM, user_content
from .scripts import CRITERIA, anchor_script, judge_script

pytestmark = pytest.mark.anyio
ROLLOUTS = ["2 + 3 = 5. \\boxed{5}", "I think it is \\boxed{6}", "Not sure.", "It is \\boxed{5.0}"]


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference == candidate)


def response_in(messages):
    return messages[-1]["content"].split("<response>\n", 1)[1].split("\n</response>", 1)[0]


def criterion_in(messages):
    return messages[-1]["content"].split("Criterion: ", 1)[1].split("\n", 1)[0]


def meets(response, criterion):
    """Rollout i meets the first i+1 criteria."""
    return CRITERIA.index(criterion) <= ROLLOUTS.index(response)


def score_by_rule(messages):
    ok = meets(response_in(messages), criterion_in(messages))
    return ("Yes", 0.8) if ok else ("No", 0.25)


def setup(score=score_by_rule, chat=None, cache=None, **judge_kwargs):
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    judge = ScriptedScoringLLM(chat or judge_script(meets), score, model="j", **judge_kwargs)
    pipeline = CaTPipeline(Roles(anchor=anchor, judge=judge), load_prompt_set(), ExactChecker(), cache=cache)
    return pipeline, anchor, judge


def group(mode="rubric", rollouts=ROLLOUTS, **options):
    # These tests count verdicts and batches: the canary\'s extra verdict per rollout is off here
    # (test_hacking covers it, in the same batches).
    options = {"canary": False, **options}
    return Group(prompt="What is 2 + 3?", rollouts=list(rollouts), mode=mode, options=GroupOptions(**options))


async def test_all_verdicts_of_a_group_are_one_scoring_call():
    pipeline, anchor, judge = setup()
    outcome = await pipeline.score(group())
    assert outcome.rewards == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert judge.calls == []  # no chat call for any verdict
    assert len(judge.batches) == 1 and len(judge.batches[0]) == len(ROLLOUTS) * len(CRITERIA)
    verdict = outcome.rollouts[0].verdicts[0]
    assert verdict.met is True and verdict.raw == "Yes" and verdict.attempts == 1
    assert verdict.p_yes == pytest.approx(0.8)
    assert outcome.rollouts[0].verdicts[1].p_yes == pytest.approx(0.25)
    usage = outcome.usage.stages["verdict"]
    assert usage.calls == 1 and usage.completion_tokens == 20 and usage.prompt_tokens > 0
    assert outcome.usage.llm_calls == 3


async def test_prompts_are_the_chat_messages_rollout_major_criterion_last():
    pipeline, _, judge = setup()
    await pipeline.score(group())
    prompts = judge.batches[0]
    # Rollout-major: each rollout's criteria back to back, so they share the response prefix.
    assert [p.split("<response>\n", 1)[1].split("\n</response>")[0] for p in prompts[:5]] == [ROLLOUTS[0]] * 5
    assert all(p.index("</response>") < p.index("Criterion: ") for p in prompts)
    assert prompts[0].startswith("<|system|>\nYou are a strict grader.")


async def test_equivalence_verdicts_are_scored_too():
    def score(messages):
        return "yes" if "\\boxed{5}" in response_in(messages) else "no"

    pipeline, _, judge = setup(score=score)
    outcome = await pipeline.score(group("judge"))
    assert outcome.rewards == [1.0, 0.0, 0.0, 0.0]
    assert judge.calls == [] and len(judge.batches) == 1


async def test_a_token_that_is_neither_yes_nor_no_is_asked_again_through_chat():
    def score(messages):
        return ("The", 0.4) if criterion_in(messages) == CRITERIA[0] else score_by_rule(messages)

    pipeline, _, judge = setup(score=score)
    outcome = await pipeline.score(group())
    assert outcome.rewards == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert len(judge.calls) == len(ROLLOUTS)  # one chat re-ask per unparseable token
    assert all(c.stage == "verdict" and c.choices == ("yes", "no") for c in judge.calls)
    assert all(c.temperature >= 0.7 for c in judge.calls)  # a re-ask is a fresh sample, as before
    first = outcome.rollouts[0].verdicts[0]
    assert first.met is True and first.attempts == 2
    assert outcome.usage.stages["verdict"].calls == 1 + len(ROLLOUTS)


async def test_a_verdict_that_never_parses_is_an_error_not_a_no():
    def score(messages):
        return "The" if criterion_in(messages) == CRITERIA[1] else score_by_rule(messages)

    chat = judge_script(lambda r, c: "maybe" if c == CRITERIA[1] else meets(r, c))
    pipeline, _, judge = setup(score=score, chat=chat)
    outcome = await pipeline.score(group(verdict_attempts=3))
    assert outcome.rewards == [None] * len(ROLLOUTS)
    assert "incomplete_rewards" in outcome.flags
    bad = outcome.rollouts[0].verdicts[1]
    assert bad.met is None and bad.error == "verdict_unparseable" and bad.attempts == 3
    assert outcome.rollouts[0].error == "verdict_failed: c2"
    assert len(judge.calls) == 2 * len(ROLLOUTS)  # attempts 2 and 3 through chat


async def test_with_one_attempt_an_unparseable_token_is_an_error_at_once():
    pipeline, _, judge = setup(score=lambda m: ("Maybe", 0.5))
    outcome = await pipeline.score(group(verdict_attempts=1))
    verdict = outcome.rollouts[0].verdicts[0]
    assert verdict.met is None and verdict.raw == "Maybe" and verdict.attempts == 1
    assert verdict.p_yes == pytest.approx(0.5)
    assert judge.calls == []


@pytest.mark.parametrize("judge_kwargs", [{"available": False}, {"renderable": False}], ids=["no-capability", "no-template"])
async def test_without_scoring_verdicts_use_chat_as_before(judge_kwargs):
    pipeline, _, judge = setup(**judge_kwargs)
    outcome = await pipeline.score(group())
    assert outcome.rewards == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert judge.batches == [] and len(judge.calls) == 20
    assert outcome.usage.stages["verdict"].calls == 20


async def test_scored_verdicts_are_cached_for_retries():
    pipeline, _, judge = setup(cache=MemoryCache())
    first = await pipeline.score(group())
    again = await pipeline.score(group())
    assert again.rewards == first.rewards
    assert len(judge.batches) == 1 and again.usage.llm_calls == 0
    assert again.usage.cache_hits["verdict"] == 20


# --- the real client against a fake vLLM ------------------------------------------------


def fake_judge(**kwargs):
    def decide(prompt):
        text = user_content(prompt)
        if "<response>" not in text:
            return ("Yes", 0.5)  # the client's one-time probe
        response = text.split("<response>\n", 1)[1].split("\n</response>", 1)[0]
        criterion = text.split("Criterion: ", 1)[1].split("\n", 1)[0]
        return ("Yes", 0.9) if meets(response, criterion) else ("No", 0.9)

    fake = FakeVLLM(decide, **kwargs)
    http = httpx.AsyncClient(transport=fake.transport())
    return fake, http


async def test_http_judge_scores_a_group_in_one_completions_request():
    fake, http = fake_judge()
    judge = OpenAICompatClient(role="judge", model="j", base_urls=["http://judge/v1"], http=http, score_batch_size=64)
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    pipeline = CaTPipeline(Roles(anchor=anchor, judge=judge), load_prompt_set(), ExactChecker())
    outcome = await pipeline.score(group())
    assert outcome.rewards == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert fake.bodies("/v1/chat/completions") == []
    batches = fake.bodies("/v1/completions")[1:]  # after the one-time probe
    assert len(batches) == 1 and len(batches[0]["prompt"]) == 20
    assert outcome.rollouts[1].verdicts[0].p_yes == pytest.approx(0.9, abs=1e-3)
    assert outcome.rollouts[1].verdicts[4].p_yes == pytest.approx(0.1, abs=1e-3)


async def test_concurrent_groups_share_judge_batches():
    fake, http = fake_judge()
    judge = OpenAICompatClient(
        role="judge", model="j", base_urls=["http://judge/v1"], http=http, score_batch_size=64, score_batch_wait_s=0.05
    )
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    pipeline = CaTPipeline(Roles(anchor=anchor, judge=judge), load_prompt_set(), ExactChecker())
    assert await judge.yes_no_scoring()
    groups = [group(seed=s) for s in range(3)]  # different seeds, greedy judge: one batch key
    outcomes = await asyncio.gather(*(pipeline.score(g) for g in groups))
    assert all(o.rewards == pytest.approx([0.2, 0.4, 0.6, 0.8]) for o in outcomes)
    batches = fake.bodies("/v1/completions")[1:]
    assert [len(b["prompt"]) for b in batches] == [60]  # 3 groups x 20 verdicts, one request
    assert all(o.usage.stages["verdict"].calls == 1 for o in outcomes)


async def test_http_judge_rejection_is_the_groups_error():
    fake, http = fake_judge(max_prompt_chars=2000)
    judge = OpenAICompatClient(role="judge", model="j", base_urls=["http://judge/v1"], http=http)
    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    pipeline = CaTPipeline(Roles(anchor=anchor, judge=judge), load_prompt_set(), ExactChecker())
    with pytest.raises(LLMRequestRejected):
        await pipeline.score(group(rollouts=ROLLOUTS[:3] + ["x" * 3000]))
