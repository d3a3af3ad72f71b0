"""Issue 9's teachers and signal checks: SCRL labels, caller-supplied (HealthBench) rubrics,
diagnostics and flat-rubric regeneration, on constructed groups with hand-worked values."""

import json
import math

import pytest

from cat_reward.engine import CaTPipeline, Criterion, Group, GroupOptions, InvalidGroup, load_prompt_set
from cat_reward.engine.ports import EquivalenceResult
from cat_reward.engine.types import ScrlThresholds

from .scripts import CRITERIA, anchor_script, judge_script, roles

pytestmark = pytest.mark.anyio


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference == candidate)


def pipeline(r):
    return CaTPipeline(roles=r, prompts=load_prompt_set(), checker=ExactChecker())


def boxed(*answers):
    return [f"so \\boxed{{{a}}}" if a is not None else "I do not know" for a in answers]


def scrl_group(rollouts, logprobs=None, **thresholds):
    options = GroupOptions(aggregator="scrl", scrl=ScrlThresholds(**thresholds))
    return Group(prompt="q", rollouts=rollouts, mode="verifiable", options=options, token_logprobs=logprobs)


# --- SCRL ---------------------------------------------------------------------------------


async def test_scrl_without_entropies_gate_off():
    # shares: 5 -> 5/8, 3 -> 2/8, 7 -> 1/8; 5 leads 3 by 0.375 > 0.15: positive. 7 < 0.15: negative.
    r, anchor, judge = roles()
    outcome = await pipeline(r).score(scrl_group(boxed(5, 5, 5, 5, 5, 3, 3, 7)))
    assert outcome.rewards == [1, 1, 1, 1, 1, 0, 0, -1]
    assert outcome.reference.answer == "5"
    assert "entropy_gate_off" in outcome.flags
    assert outcome.reference.details["entropy_gate"].startswith("off")
    assert [c["label"] for c in outcome.reference.details["clusters"]] == ["positive", "neutral", "negative"]
    assert anchor.calls == [] and judge.calls == []


def logprobs(entropy):
    """Token logprobs whose mean surprisal is ``entropy``."""
    return [-entropy, -entropy]


async def test_scrl_entropy_gate_keeps_a_confident_minority():
    rollouts = boxed(5, 5, 5, 5, 5, 3, 3, 7)
    # The lone 7 was sampled with low entropy (below the group mean): not a negative label.
    low = [logprobs(1.0)] * 5 + [logprobs(1.0)] * 2 + [logprobs(0.1)]
    outcome = await pipeline(roles()[0]).score(scrl_group(rollouts, low))
    assert outcome.rewards == [1, 1, 1, 1, 1, 0, 0, 0]
    assert outcome.reference.details["entropy_gate"] == "on"
    # ...and with high entropy it is one.
    high = [logprobs(1.0)] * 7 + [logprobs(3.0)]
    outcome = await pipeline(roles()[0]).score(scrl_group(rollouts, high))
    assert outcome.rewards[-1] == -1
    mean = (7 * 1.0 + 3.0) / 8
    assert outcome.reference.details["group_mean_entropy"] == pytest.approx(mean)


async def test_scrl_no_positive_when_consensus_is_weak():
    # 5 -> 3/8, 3 -> 3/8: a tie, no positive; 9 -> 1/8 negative; no answer -> -1.
    outcome = await pipeline(roles()[0]).score(scrl_group(boxed(5, 5, 5, 3, 3, 3, 9, None)))
    assert outcome.rewards == [0, 0, 0, 0, 0, 0, -1, -1]
    assert "scrl_no_positive_label" in outcome.flags
    assert outcome.reference.answer is None
    assert outcome.rollouts[-1].flags == ["no_answer"]


async def test_scrl_lead_must_exceed_the_margin():
    # 5 -> 4/8 = 0.5 share, 3 -> 3/8: lead 0.125 <= 0.15: no positive label.
    outcome = await pipeline(roles()[0]).score(scrl_group(boxed(5, 5, 5, 5, 3, 3, 3, 8)))
    assert outcome.rewards[:4] == [0, 0, 0, 0]
    # A smaller margin option makes it positive.
    outcome = await pipeline(roles()[0]).score(scrl_group(boxed(5, 5, 5, 5, 3, 3, 3, 8), margin=0.1))
    assert outcome.rewards[:4] == [1, 1, 1, 1]


async def test_scrl_needs_verifiable_and_matching_logprobs():
    with pytest.raises(InvalidGroup):
        await pipeline(roles()[0]).score(Group(prompt="q", rollouts=["a"], mode="rubric", options=GroupOptions(aggregator="scrl")))
    with pytest.raises(InvalidGroup) as info:
        await pipeline(roles()[0]).score(scrl_group(boxed(1, 2), [logprobs(1.0)]))
    assert info.value.param == "token_logprobs"


# --- caller-supplied rubrics (HealthBench) ------------------------------------------------

HB = (
    Criterion("s1", "Advises seeing a doctor if the fever lasts more than three days.", 5, "caller", ("axis:completeness",)),
    Criterion("s2", "Asks how long the fever has lasted.", 3, "caller"),
    Criterion("s3", "Recommends taking antibiotics without a prescription.", -4, "caller"),
    Criterion("s4", "Mentions drinking fluids.", 2, "caller"),
)
# Which criteria each rollout meets, and the hand-worked score (sum of met points / 10, clipped).
MEETS = {
    "A": ({"s1", "s2", "s4"}, 1.0),  # 10 / 10
    "B": ({"s1", "s3", "s4"}, 0.3),  # (5 - 4 + 2) / 10
    "C": ({"s3"}, 0.0),  # -4 / 10, clipped to 0
    "D": ({"s2"}, 0.3),  # 3 / 10
}


def hb_judge():
    ids = {c.text: c.id for c in HB}
    return judge_script(lambda response, criterion: ids.get(criterion, "") in MEETS[response][0])


async def test_supplied_rubric_scored_as_healthbench():
    r, anchor, judge = roles(judge=hb_judge())
    group = Group(prompt="I have a fever.", rollouts=list(MEETS), mode="rubric", rubric=HB,
                  options=GroupOptions(aggregator="none", rubric_source="supplied"))
    outcome = await pipeline(r).score(group)
    assert outcome.rewards == pytest.approx([v[1] for v in MEETS.values()])
    assert anchor.calls == []  # no synthesis, no rubric: the caller's rubric is the teacher
    assert [c.source for c in outcome.rubric] == ["caller"] * 4
    assert outcome.rubric[0].tags == ("axis:completeness",)


async def test_both_rubrics_side_by_side():
    ids = {c.text: c.id for c in HB}

    def decide(response, criterion):
        if criterion in ids:
            return ids[criterion] in MEETS[response][0]
        return CRITERIA.index(criterion) < 3  # the self-proposed rubric: 3 of 5 met by all

    r, anchor, _ = roles(judge=judge_script(decide))
    group = Group(prompt="I have a fever.", rollouts=list(MEETS), mode="rubric", rubric=HB,
                  options=GroupOptions(rubric_source="both"))
    outcome = await pipeline(r).score(group)
    assert outcome.rewards == pytest.approx([0.6] * 4)
    assert outcome.supplied.rewards == pytest.approx([v[1] for v in MEETS.values()])
    assert [c.source for c in outcome.rubric] == ["anchor"] * 5
    assert outcome.supplied.diagnostics.zero_variance is False
    assert outcome.diagnostics.zero_variance is True and "zero_variance" in outcome.flags


async def test_supplied_rubric_validation():
    p = pipeline(roles()[0])
    with pytest.raises(InvalidGroup, match="needs a 'rubric'"):
        await p.score(Group(prompt="q", rollouts=["a"], mode="rubric", options=GroupOptions(rubric_source="supplied")))
    with pytest.raises(InvalidGroup, match="positive points"):
        await p.score(Group(prompt="q", rollouts=["a"], mode="rubric", rubric=(HB[2],),
                            options=GroupOptions(aggregator="none", rubric_source="supplied")))
    with pytest.raises(InvalidGroup, match="mode 'rubric'"):
        await p.score(Group(prompt="q", rollouts=["a"], mode="judge", rubric=HB,
                            options=GroupOptions(rubric_source="supplied", aggregator="none")))


# --- diagnostics ----------------------------------------------------------------------------


async def test_diagnostics_of_a_discriminating_group():
    # Rollout i meets the first i+1 criteria.
    rollouts = ["r0", "r1", "r2", "r3"]
    r, _, _ = roles(judge=judge_script(lambda resp, c: CRITERIA.index(c) <= rollouts.index(resp)))
    outcome = await pipeline(r).score(Group(prompt="q", rollouts=rollouts, mode="rubric"))
    d = outcome.diagnostics
    assert [s.met for s in d.criteria] == [4, 3, 2, 1, 0]
    assert [s.discriminating for s in d.criteria] == [False, True, True, True, False]
    assert d.discriminating_criteria == 3
    assert d.reward_mean == pytest.approx(0.5)
    rewards = [0.2, 0.4, 0.6, 0.8]
    assert d.reward_std == pytest.approx(math.sqrt(sum((x - 0.5) ** 2 for x in rewards) / 4))
    assert not d.zero_variance and "zero_variance" not in outcome.flags


async def test_diagnostics_of_a_flat_group():
    r, _, _ = roles(judge=judge_script(lambda resp, c: CRITERIA.index(c) < 2))
    outcome = await pipeline(r).score(Group(prompt="q", rollouts=["a", "b", "c"], mode="rubric"))
    assert outcome.rewards == [0.4, 0.4, 0.4]
    assert outcome.diagnostics.zero_variance and outcome.diagnostics.discriminating_criteria == 0
    assert outcome.diagnostics.regenerated is False  # off by default


async def test_flat_rubric_regenerated_once_when_asked():
    new = [f"The response names fact number {i}." for i in range(5)]
    replies = iter([json.dumps({"criteria": CRITERIA}), json.dumps({"criteria": new})])

    def anchor(request):
        return "the reference" if request.stage == "synthesis" else next(replies)

    def decide(response, criterion):
        if criterion in CRITERIA:
            return True  # flat: met by every rollout
        return new.index(criterion) < ["a", "b", "c"].index(response) + 1

    r, anchor_llm, _ = roles(anchor=anchor, judge=judge_script(decide))
    outcome = await pipeline(r).score(
        Group(prompt="q", rollouts=["a", "b", "c"], mode="rubric", options=GroupOptions(regenerate_flat_rubric=True))
    )
    assert outcome.diagnostics.regenerated is True
    assert [c.text for c in outcome.rubric] == new
    assert outcome.rewards == pytest.approx([0.2, 0.4, 0.6])
    assert outcome.reference.details["rubric"]["replaced"] == CRITERIA
    second_rubric_prompt = [c for c in anchor_llm.calls if c.stage == "rubric"][1].messages[-1]["content"]
    assert "cannot tell the responses apart" in second_rubric_prompt and CRITERIA[0] in second_rubric_prompt
