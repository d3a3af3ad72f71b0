"""The fused option: reference and rubric in one anchor generation, with a scripted anchor."""

import json

import pytest

from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.cache import MemoryCache
from cat_reward.engine import (
    CaTPipeline,
    Group,
    GroupOptions,
    InvalidGroup,
    RubricGenerationFailed,
    SynthesisFailed,
    load_prompt_set,
)
from cat_reward.engine.fused import fused_schema, parse_fused
from cat_reward.engine.ports import EquivalenceResult, Roles

from .scripts import CRITERIA, judge_script

pytestmark = pytest.mark.anyio
ROLLOUTS = ["2 + 3 = 5. \\boxed{5}", "I think it is \\boxed{6}", "It is \\boxed{5.0}"]
REFERENCE = "2 + 3 = 5, so the answer is \\boxed{5}."


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference == candidate)


def fused_anchor(replies):
    """Replies to "fused" calls in turn; "rubric" calls (top-ups) get the standard criteria."""
    replies = list(replies)

    def script(request):
        if request.stage == "fused":
            return replies.pop(0)
        if request.stage == "rubric":
            return json.dumps({"criteria": CRITERIA})
        if request.stage == "synthesis":
            return REFERENCE
        raise AssertionError(request.stage)

    return script


def setup(replies, cache=None):
    anchor = ScriptedLLM(fused_anchor(replies), role="anchor", model="a")
    judge = ScriptedLLM(judge_script(lambda r, c: CRITERIA.index(c) < 2 or "5" in r), role="judge", model="j")
    return CaTPipeline(Roles(anchor=anchor, judge=judge), load_prompt_set(), ExactChecker(), cache=cache), anchor


def group(mode="rubric", **options):
    # These tests count verdicts and batches: the canary\'s extra verdict per rollout is off here
    # (test_hacking covers it, in the same batches).
    options = {"canary": False, **options}
    return Group(prompt="What is 2 + 3?", rollouts=list(ROLLOUTS), mode=mode, options=GroupOptions(**options))


GOOD = json.dumps({"reference": REFERENCE, "criteria": CRITERIA})


async def test_one_generation_gives_reference_and_rubric():
    pipeline, anchor = setup([GOOD])
    outcome = await pipeline.score(group(fused=True, seed=4))
    assert [c.stage for c in anchor.calls] == ["fused"]
    assert outcome.reference.text == REFERENCE and outcome.reference.aggregator == "synthesis"
    assert [c.text for c in outcome.rubric] == CRITERIA
    assert outcome.rewards == pytest.approx([1.0, 0.4, 1.0])
    assert outcome.reference.details["rubric"]["fused"] is True
    assert outcome.usage.stages["fused"].calls == 1 and "synthesis" not in outcome.usage.stages
    call = anchor.calls[0]
    # One prompt with the rollouts and the rubric instructions, JSON forced with both keys.
    user = call.messages[-1]["content"]
    assert all(r in user for r in ROLLOUTS) and '"reference"' in user and '"criteria"' in user
    assert list(call.json_schema["properties"]) == ["reference", "criteria"]  # reference written first
    assert call.max_tokens == 768 + 384 and call.seed == 4


async def test_default_is_the_papers_two_steps():
    pipeline, anchor = setup([])
    await pipeline.score(group())
    assert [c.stage for c in anchor.calls] == ["synthesis", "rubric"]


async def test_reply_without_reference_is_asked_again_then_fails():
    pipeline, anchor = setup(["not json", json.dumps({"criteria": CRITERIA}), GOOD])
    outcome = await pipeline.score(group(fused=True))
    assert outcome.reference.text == REFERENCE
    assert [c.stage for c in anchor.calls] == ["fused"] * 3
    assert anchor.calls[1].temperature >= 1.0  # a re-ask is a fresh sample

    pipeline, anchor = setup(["{}", "{}", "{}"])
    with pytest.raises(SynthesisFailed):
        await pipeline.score(group(fused=True))
    assert len(anchor.calls) == 3


async def test_too_few_criteria_are_topped_up_from_the_reference():
    pipeline, anchor = setup([json.dumps({"reference": REFERENCE, "criteria": CRITERIA[:2]})])
    outcome = await pipeline.score(group(fused=True))
    assert [c.stage for c in anchor.calls] == ["fused", "rubric"]
    assert [c.text for c in outcome.rubric] == CRITERIA  # merged, deduplicated
    assert REFERENCE in anchor.calls[1].messages[-1]["content"]
    assert outcome.reference.details["rubric"]["top_ups"] == 1


async def test_criteria_that_stay_too_few_fail():
    def anchor_script(request):
        if request.stage == "fused":
            return json.dumps({"reference": REFERENCE, "criteria": CRITERIA[:1]})
        return json.dumps({"criteria": CRITERIA[:1]})

    anchor = ScriptedLLM(anchor_script, role="anchor", model="a")
    judge = ScriptedLLM(judge_script(lambda r, c: True), role="judge", model="j")
    pipeline = CaTPipeline(Roles(anchor=anchor, judge=judge), load_prompt_set(), ExactChecker())
    with pytest.raises(RubricGenerationFailed):
        await pipeline.score(group(fused=True, rubric_attempts=3))
    assert [c.stage for c in anchor.calls] == ["fused", "rubric", "rubric"]


@pytest.mark.parametrize(
    "kwargs", [{"mode": "verifiable"}, {"mode": "judge"}, {"aggregator": "given"}], ids=["verifiable", "judge", "given"]
)
async def test_fused_is_refused_where_it_has_no_meaning(kwargs):
    pipeline, anchor = setup([GOOD])
    mode = kwargs.pop("mode", "rubric")
    g = group(mode, fused=True, **kwargs)
    if kwargs.get("aggregator") == "given":
        g = Group(prompt="q", rollouts=list(ROLLOUTS), mode=mode, reference=REFERENCE, options=g.options)
    with pytest.raises(InvalidGroup) as info:
        await pipeline.score(g)
    assert info.value.param == "options.fused"
    assert anchor.calls == []


async def test_fused_and_two_step_results_are_cached_apart():
    cache = MemoryCache()
    pipeline, anchor = setup([GOOD], cache=cache)
    two_step = group()
    fused = group(fused=True)
    assert pipeline.fingerprint(two_step) != pipeline.fingerprint(fused)
    await pipeline.score(fused)
    again = await pipeline.score(fused)
    assert again.usage.llm_calls == 0
    await pipeline.score(two_step)
    assert [c.stage for c in anchor.calls] == ["fused", "synthesis", "rubric"]


def test_parse_fused_finds_the_object_in_chatter():
    text = 'Sure! {"note": 1} Here: {"reference": " R ", "criteria": ["a long criterion", {"text": "another one"}]}'
    assert parse_fused(text) == ("R", ["a long criterion", "another one"])
    assert parse_fused("no json") == ("", [])
    schema = fused_schema(5, 8)
    assert schema["properties"]["criteria"]["minItems"] == 5 and schema["required"] == ["reference", "criteria"]
