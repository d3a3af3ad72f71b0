"""The CaT pipeline with a scripted anchor and judge: arithmetic, bookkeeping, error paths."""

import json

import pytest

from cat_reward.backends.math_verify_pool import MathVerifyPool
from cat_reward.engine import (
    CaTPipeline,
    Group,
    GroupOptions,
    InvalidGroup,
    LLMUnavailable,
    RubricGenerationFailed,
    SynthesisFailed,
    load_prompt_set,
)
from cat_reward.engine.ports import EquivalenceResult

from .scripts import CRITERIA, anchor_script, judge_script, roles

pytestmark = pytest.mark.anyio

PROMPT = "What is 2 + 3? Think it through."
ROLLOUTS = ["2 + 3 = 5. \\boxed{5}", "I think it is \\boxed{6}", "Not sure.", "It is \\boxed{5.0}"]


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
async def checker():
    pool = MathVerifyPool(workers=2, timeout_s=2)
    yield pool
    await pool.close()


def pipeline(r, checker):
    return CaTPipeline(roles=r, prompts=load_prompt_set(), checker=checker)


def group(mode="rubric", rollouts=ROLLOUTS, **options):
    reference = options.pop("reference", None)
    return Group(prompt=PROMPT, rollouts=list(rollouts), mode=mode, reference=reference, options=GroupOptions(**options))


# --- rubric mode ------------------------------------------------------------------------


async def test_rubric_rewards_are_fraction_met_in_order(checker):
    # Rollout i meets the first i+1 criteria (capped at 5).
    def decide(response, criterion):
        return CRITERIA.index(criterion) <= ROLLOUTS.index(response)

    r, anchor, judge = roles(judge=judge_script(decide))
    outcome = await pipeline(r, checker).score(group())
    assert outcome.rewards == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert [c.text for c in outcome.rubric] == CRITERIA
    assert all(len(ro.verdicts) == 5 for ro in outcome.rollouts)
    assert all(v.p_yes is not None for ro in outcome.rollouts for v in ro.verdicts)
    # synthesis, rubric, the verdicts, and one canary verdict per rollout
    assert outcome.usage.llm_calls == 1 + 1 + len(ROLLOUTS) * len(CRITERIA) + len(ROLLOUTS)
    assert outcome.usage.stages["verdict"].calls == 20 + len(ROLLOUTS)
    assert outcome.diagnostics.canary_yes == 0 and outcome.diagnostics.canary_judged == len(ROLLOUTS)
    assert outcome.flags == []
    assert len(outcome.fingerprint) == 64
    assert outcome.prompt_version.startswith("cat-v1+")
    assert (outcome.anchor_model, outcome.judge_model) == ("anchor-model", "judge-model")


async def test_synthesis_does_not_see_the_question_by_default(checker):
    r, anchor, _ = roles()
    await pipeline(r, checker).score(group())
    synthesis = anchor.calls[0]
    assert synthesis.stage == "synthesis"
    text = " ".join(m["content"] for m in synthesis.messages)
    assert PROMPT not in text
    assert all(rollout.strip() in text for rollout in ROLLOUTS)


async def test_include_question_shows_it(checker):
    r, anchor, _ = roles()
    await pipeline(r, checker).score(group(include_question=True))
    assert PROMPT in anchor.calls[0].messages[-1]["content"]


async def test_judge_prompt_puts_criterion_last_and_response_first(checker):
    r, _, judge = roles()
    await pipeline(r, checker).score(group(rollouts=ROLLOUTS[:1]))
    user = judge.calls[0].messages[-1]["content"]
    assert user.index(ROLLOUTS[0]) < user.index(CRITERIA[0])
    # Verdicts of one rollout are asked back to back.
    assert judge.calls[0].choices == ("yes", "no")


async def test_fingerprint_covers_what_changes_the_result(checker):
    r, _, _ = roles()
    p = pipeline(r, checker)
    base = p.fingerprint(group())
    assert p.fingerprint(group()) == base
    assert p.fingerprint(group(verdict_concurrency=3)) == base  # a performance knob
    assert p.fingerprint(group(rollouts=ROLLOUTS[::-1])) != base
    assert p.fingerprint(group(mode="judge")) != base
    assert p.fingerprint(group(seed=1)) != base
    assert p.fingerprint(group(include_question=True)) != base


async def test_rubric_resamples_when_too_few_distinct_criteria(checker):
    replies = iter([
        json.dumps({"criteria": CRITERIA[:2] + [CRITERIA[0].upper()]}),
        json.dumps({"criteria": CRITERIA[1:]}),
    ])

    def anchor(request):
        return "reference text" if request.stage == "synthesis" else next(replies)

    r, anchor_llm, _ = roles(anchor=anchor)
    outcome = await pipeline(r, checker).score(group(seed=7))
    assert [c.text for c in outcome.rubric] == CRITERIA  # merged, duplicates dropped
    assert outcome.reference.details["rubric"]["attempts"] == 2
    first, second = [c for c in anchor_llm.calls if c.stage == "rubric"]
    assert second.messages == first.messages  # a fresh sample of the same prompt...
    assert (first.seed, second.seed) == (7, 8)  # ...with another seed
    assert second.temperature >= 1.0 > first.temperature


async def test_rubric_generation_fails_explicitly(checker):
    r, anchor, _ = roles(anchor=anchor_script(criteria=["only one criterion here"]))
    with pytest.raises(RubricGenerationFailed, match="at least 5"):
        await pipeline(r, checker).score(group(rubric_attempts=3))
    assert sum(1 for c in anchor.calls if c.stage == "rubric") == 3


async def test_rubric_capped_at_max_criteria(checker):
    many = [f"The response covers distinct point {i}." for i in range(12)]
    r, _, _ = roles(anchor=anchor_script(criteria=many))
    outcome = await pipeline(r, checker).score(group(max_criteria=8))
    assert len(outcome.rubric) == 8


async def test_unparseable_verdict_is_retried_then_an_error_never_zero(checker):
    def decide(response, criterion):
        return "maybe" if (response == ROLLOUTS[1] and criterion == CRITERIA[2]) else True

    r, _, judge = roles(judge=judge_script(decide))
    outcome = await pipeline(r, checker).score(group(verdict_attempts=3))
    assert outcome.rewards[0] == 1.0
    assert outcome.rewards[1] is None
    bad = outcome.rollouts[1]
    assert bad.error == "verdict_failed: c3"
    failed = [v for v in bad.verdicts if v.met is None]
    assert len(failed) == 1 and failed[0].attempts == 3 and failed[0].error == "verdict_unparseable"
    assert "incomplete_rewards" in outcome.flags
    assert outcome.usage.stages["verdict"].calls == 20 + 2 + len(ROLLOUTS)  # + a canary verdict per rollout


async def test_unparseable_then_parseable_verdict_counts(checker):
    seen = set()

    def decide(response, criterion):
        key = (response, criterion)
        if key not in seen:
            seen.add(key)
            return "hmm"
        return False

    r, _, _ = roles(judge=judge_script(decide))
    outcome = await pipeline(r, checker).score(group(rollouts=ROLLOUTS[:1]))
    assert outcome.rewards == [0.0]
    assert all(v.attempts == 2 and v.met is False for v in outcome.rollouts[0].verdicts)


async def test_judge_down_raises_unavailable(checker):
    def down(request):
        raise LLMUnavailable("judge backend unreachable", role="judge")

    r, _, _ = roles(judge=down)
    with pytest.raises(LLMUnavailable):
        await pipeline(r, checker).score(group())


async def test_empty_synthesis_fails(checker):
    r, _, _ = roles(anchor=anchor_script(reference="   "))
    with pytest.raises(SynthesisFailed):
        await pipeline(r, checker).score(group())


# --- verifiable mode ----------------------------------------------------------------------


async def test_verifiable_with_synthesis(checker):
    r, anchor, judge = roles()
    outcome = await pipeline(r, checker).score(group(mode="verifiable"))
    assert outcome.reference.answer == "5"
    assert outcome.rewards == [1.0, 0.0, 0.0, 1.0]
    assert outcome.rollouts[2].flags == ["no_answer"]
    assert [ro.extracted_answer for ro in outcome.rollouts] == ["5", "6", None, "5.0"]
    assert judge.calls == []
    assert outcome.usage.llm_calls == 1
    assert "Unified response" in anchor.calls[0].messages[-1]["content"]  # the math synthesis prompt


async def test_verifiable_reference_without_answer_is_flagged_not_rewarded(checker):
    r, _, _ = roles(anchor=anchor_script(reference="I could not reconcile these."))
    outcome = await pipeline(r, checker).score(group(mode="verifiable"))
    assert outcome.rewards == [None] * 4
    assert "reference_no_answer" in outcome.flags
    assert all(ro.error == "reference_no_answer" for ro in outcome.rollouts)


async def test_verifiable_answer_check_failure_is_explicit():
    class Failing:
        async def check(self, reference, candidate):
            return EquivalenceResult(None, "timeout")

    r, _, _ = roles()
    outcome = await pipeline(r, Failing()).score(group(mode="verifiable", rollouts=ROLLOUTS[:1]))
    assert outcome.rewards == [None]
    assert outcome.rollouts[0].error == "answer_check_failed: timeout"
    assert "incomplete_rewards" in outcome.flags


async def test_majority_vote_groups_by_equivalence(checker):
    rollouts = ["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{3}", "no idea"]
    r, anchor, judge = roles()
    outcome = await pipeline(r, checker).score(group(mode="verifiable", rollouts=rollouts, aggregator="majority"))
    assert outcome.reference.answer == "\\frac{1}{2}"
    assert outcome.reference.details["majority_ratio"] == 0.5
    assert outcome.reference.details["distinct_answers"] == 2
    assert outcome.rewards == [1.0, 1.0, 0.0, 0.0]
    assert anchor.calls == [] and judge.calls == []


async def test_majority_with_no_answers(checker):
    r, _, _ = roles()
    outcome = await pipeline(r, checker).score(group(mode="verifiable", rollouts=["no", "idea"], aggregator="majority"))
    assert outcome.rewards == [None, None]
    assert "reference_no_answer" in outcome.flags


async def test_majority_needs_verifiable_mode(checker):
    r, _, _ = roles()
    with pytest.raises(InvalidGroup, match="majority"):
        await pipeline(r, checker).score(group(mode="rubric", aggregator="majority"))


async def test_given_reference_bare_answer(checker):
    r, anchor, _ = roles()
    outcome = await pipeline(r, checker).score(
        group(mode="verifiable", rollouts=["\\boxed{\\frac{1}{2}}", "\\boxed{2}"], aggregator="given", reference="0.5")
    )
    assert outcome.rewards == [1.0, 0.0]
    assert outcome.reference.details["extractor"] == "whole_reference"
    assert anchor.calls == []


async def test_given_needs_a_reference(checker):
    r, _, _ = roles()
    with pytest.raises(InvalidGroup) as info:
        await pipeline(r, checker).score(group(aggregator="given"))
    assert info.value.param == "reference"


async def test_unknown_mode_and_aggregator(checker):
    r, _, _ = roles()
    with pytest.raises(InvalidGroup):
        await pipeline(r, checker).score(group(mode="poetry"))
    with pytest.raises(InvalidGroup):
        await pipeline(r, checker).score(group(aggregator="oracle"))
    with pytest.raises(InvalidGroup):
        await pipeline(r, checker).score(group(rollouts=[]))


# --- judge mode ---------------------------------------------------------------------------


async def test_judge_mode_equivalence_baseline(checker):
    r, _, judge = roles(judge=judge_script(lambda response, _: "5" in response))
    outcome = await pipeline(r, checker).score(group(mode="judge"))
    assert outcome.rewards == [1.0, 0.0, 0.0, 1.0]
    assert outcome.rubric == []
    assert outcome.usage.stages["equivalence"].calls == 4
    user = judge.calls[0].messages[-1]["content"]
    assert user.index("<reference>") < user.index("<response>")  # shared reference first
