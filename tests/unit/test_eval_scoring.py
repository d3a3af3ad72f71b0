"""cat-reward eval's scoring through the service's real pipeline (open_services with a scripted
anchor and judge and the real math-verify pool): single sample, majority vote and synthesis, with
exact expected numbers, and failures counted rather than scored 0."""

from __future__ import annotations

import pytest

from cat_reward.backends.math_verify_pool import MathVerifyPool
from cat_reward.engine import LLMUnavailable
from cat_reward.engine.ports import ChatRequest, EquivalenceResult
from cat_reward.evaluation.datasets import HealthItem, MathItem, RubricCriterion
from cat_reward.evaluation.policy import Completion
from cat_reward.evaluation.report import summarize
from cat_reward.evaluation.scoring import ItemScorer
from cat_reward.settings import Settings
from cat_reward.wiring import open_services

from .scripts import judge_script, roles

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
async def checker():
    pool = MathVerifyPool(workers=2, timeout_s=5)
    yield pool
    await pool.close()


def synthesis_text(request: ChatRequest) -> str:
    """The scripted anchor: what it synthesizes depends on markers in the rollouts it reads."""
    assert request.stage == "synthesis"
    shown = request.messages[-1]["content"]
    if "DOWN" in shown:
        raise LLMUnavailable("anchor down", role="anchor")
    if "NOANSWER" in shown:
        return "The attempts differ and I cannot settle it."
    if "HEALTH" in shown:
        return "SYNTH: apply pressure, rinse it, and use a tourniquet."
    return "Summary: most attempts slip. Unified response: 2 + 3 = 5, so \\boxed{5}."


@pytest.fixture
async def scorer(checker):
    opened = []

    async def make(judge=None, seed=None, answer_checker=None):
        r, anchor, judge_llm = roles(anchor=synthesis_text, judge=judge)
        services = await open_services(Settings(), roles=r, checker=answer_checker or checker, with_history=False)
        opened.append(services)
        return ItemScorer(services.rewards, services.checker, seed=seed), anchor, judge_llm

    yield make
    for services in opened:
        await services.aclose()


def completions(*texts: str) -> list[Completion]:
    return [Completion(text=t, finish_reason="stop") for t in texts]


MATH = MathItem(id="m", problem="What is 2 + 3?", answer="5")
GROUP_SIZES = [1, 2, 4]
ITEMS = {
    # majority (6) is wrong, synthesis (5) is right; one rollout has no answer at all
    "A": ["I get \\boxed{6}.", "So \\boxed{6}", "2 + 3 = \\boxed{5}", "no idea"],
    # majority (5) is right, the synthesis has no final answer: wrong, and counted
    "B": ["NOANSWER \\boxed{5}", "\\boxed{5}", "\\boxed{5}", "\\boxed{7}"],
    # the anchor is down: every G fails for this item and is counted in errors
    "C": ["DOWN \\boxed{5}", "\\boxed{4}", "\\boxed{5}", "\\boxed{5}"],
    # everyone agrees and is right
    "D": ["\\boxed{5}"] * 4,
}


async def test_math_item_where_majority_is_wrong_and_synthesis_right(scorer):
    score, anchor, _ = await scorer(seed=3)
    result = await score.score_math(MATH, completions(*ITEMS["A"]), GROUP_SIZES)
    assert [r.answer for r in result.rollouts] == ["6", "6", "5", None]
    assert [r.correct for r in result.rollouts] == [False, False, True, False]  # no answer: wrong
    assert all(r.error is None for r in result.rollouts) and result.single_error is None
    for group, g in zip(result.groups, GROUP_SIZES):
        assert group.group_size == g and group.error is None
        assert (group.majority_answer, group.majority_correct) == ("6", False)
        assert (group.synthesis_answer, group.synthesis_correct, group.synthesis_no_answer) == ("5", True, False)
        assert group.disagrees is True
        assert group.synthesis_reference.endswith("\\boxed{5}.")
    # the anchor synthesized from the first G rollouts each time, with the eval's seed
    shown = [call.messages[-1]["content"] for call in anchor.calls]
    assert sorted(s.count("### Response ") for s in shown) == [1, 2, 4]
    assert all(call.seed == 3 for call in anchor.calls)
    assert len(anchor.calls) == 3
    assert sum("no idea" in s for s in shown) == 1  # only G=4 saw the fourth rollout


async def test_math_report_numbers_through_the_pipeline(scorer):
    score, _, _ = await scorer()
    results = [(await score.score_math(MATH, completions(*texts), GROUP_SIZES)).to_json() for texts in ITEMS.values()]
    c = results[2]
    assert all(g["error"].startswith("llm_unavailable: anchor down") for g in c["groups"])
    assert [r["correct"] for r in c["rollouts"]] == [True, False, True, True]  # single sample needs no anchor

    summary = summarize("math", results, GROUP_SIZES)
    assert summary["counts"] == {"items": 4, "policy_errors": 0}
    assert summary["single_sample"] == {"accuracy": 11 / 16, "rollouts": 16, "errors": 0, "items": 4}
    for row, g in zip(summary["by_group_size"], GROUP_SIZES):
        assert row == {
            "group_size": g,
            "n_items": 3,  # A, B, D; C failed
            "errors": 1,
            "error_reasons": {"llm_unavailable": 1},
            "single_sample_accuracy": 8 / 12,  # A 1/4, B 3/4, D 4/4
            "single_sample_rollouts": 12,
            "single_sample_errors": 0,
            "majority_accuracy": 2 / 3,  # B, D
            "majority_no_answer": 0,
            "synthesis_accuracy": 2 / 3,  # A, D
            "synthesis_no_answer": 1,  # B
            "synthesis_disagrees_with_majority": 2 / 3,  # A, B
            "disagreements": 2,
            "synthesis_right_when_disagreeing": 0.5,  # right in A, wrong in B
            "synthesis_right_in_disagreements": 1,
            "majority_right_in_disagreements": 1,
        }


class TimingOut:
    """The real checker, except that any check involving the answer 9 times out."""

    def __init__(self, inner):
        self.inner = inner

    async def check(self, reference, candidate):
        if "9" in (reference, candidate):
            return EquivalenceResult(None, "timeout")
        return await self.inner.check(reference, candidate)


async def test_math_rollout_check_failure_is_an_error_not_a_zero(scorer, checker):
    score, _, _ = await scorer(answer_checker=TimingOut(checker))
    item = MathItem(id="slow-gold", problem="?", answer="9")
    result = await score.score_math(item, completions("\\boxed{5}", "no answer"), [2])
    assert result.rollouts[0].correct is None and result.rollouts[0].error.startswith("answer_check_failed")
    assert result.rollouts[1].correct is False  # no answer needs no check: wrong
    assert result.groups[0].error.startswith("answer_check_failed")
    summary = summarize("math", [result.to_json()], [2])
    row = summary["by_group_size"][0]
    assert (row["n_items"], row["errors"], row["error_reasons"]) == (0, 1, {"answer_check_failed": 1})
    assert row["majority_accuracy"] is None and row["synthesis_accuracy"] is None  # n/a, not 0
    assert summary["single_sample"] == {"accuracy": 0.0, "rollouts": 1, "errors": 1, "items": 1}


RUBRIC = (
    RubricCriterion("Mentions pressure.", 5, ("axis:accuracy",)),
    RubricCriterion("Mentions rinsing.", 3, ("axis:completeness",)),
    RubricCriterion("Recommends a tourniquet.", -6, ("axis:accuracy",)),
)
HEALTH = HealthItem(id="hb", prompt=({"role": "user", "content": "HEALTH: I cut my finger."},), rubrics=RUBRIC)


def health_judge(response: str, criterion: str):
    if "UNSURE" in response and criterion == "Mentions rinsing.":
        return "maybe"  # unparseable, every attempt: the verdict fails
    keyword = {"Mentions pressure.": "pressure", "Mentions rinsing.": "rinse", "Recommends a tourniquet.": "tourniquet"}
    return keyword[criterion] in response


async def test_healthbench_single_sample_and_synthesis_with_negative_points(scorer):
    score, anchor, judge = await scorer(judge=judge_script(health_judge))
    texts = ["HEALTH: apply pressure and rinse.", "HEALTH: use a tourniquet.", "HEALTH: apply pressure. UNSURE"]
    result = await score.score_health(HEALTH, completions(*texts), [1, 3])
    r0, r1, r2 = result.rollouts
    assert (r0.score, r0.reward, r0.error) == (1.0, 1.0, None)
    assert (r1.score, r1.reward, r1.error) == (-0.75, 0.0, None)  # -6/8 unclipped; the service clips per rollout
    assert r2.score is None and r2.reward is None and r2.error.startswith("verdict_failed")
    assert [r.criteria_met for r in (r0, r1, r2)] == [[True, True, False], [False, False, True], [True, None, False]]
    for group in result.groups:
        assert group.error is None
        assert group.synthesis_reference == "SYNTH: apply pressure, rinse it, and use a tourniquet."
        assert group.synthesis_score == pytest.approx((5 + 3 - 6) / 8)
        assert group.synthesis_criteria_met == [True, True, True] and group.synthesis_reward == pytest.approx(0.25)
    assert [c.stage for c in anchor.calls] == ["synthesis", "synthesis"]  # no self-proposed rubric

    summary = summarize("healthbench", [result.to_json()], [1, 3])
    for row, g in zip(summary["by_group_size"], [1, 3]):
        assert row == {
            "group_size": g,
            "n_items": 1,
            "errors": 0,
            "error_reasons": {},
            "single_sample_score": pytest.approx((1.0 - 0.75) / 2),  # simple-evals: mean, then clip
            "single_sample_rollouts": 2,
            "single_sample_errors": 1,  # the failed verdict: left out, counted
            "synthesis_score": pytest.approx(0.25),
        }


async def test_healthbench_synthesis_failure_is_counted(scorer):
    score, _, _ = await scorer(judge=judge_script(health_judge))
    item = HealthItem(id="down", prompt=({"role": "user", "content": "?"},), rubrics=RUBRIC)
    result = await score.score_health(item, completions("DOWN pressure", "rinse"), [2])
    assert [r.score for r in result.rollouts] == [5 / 8, 3 / 8]
    assert result.groups[0].error == "llm_unavailable: anchor down" and result.groups[0].synthesis_score is None
    row = summarize("healthbench", [result.to_json()], [2])["by_group_size"][0]
    assert (row["n_items"], row["errors"], row["synthesis_score"], row["single_sample_score"]) == (0, 1, None, None)


async def test_an_unreadable_majority_answer_still_compares_with_the_synthesis(scorer):
    score, _, _ = await scorer()
    # the majority's answer is "\\", which math-verify cannot parse: it differs from the synthesis' 5
    texts = ["so \\boxed{\\\\}", "so \\boxed{\\\\}", "so \\boxed{\\\\}", "\\boxed{5}"]
    result = await score.score_math(MATH, completions(*texts), [4])
    (group,) = result.groups
    assert group.error is None
    assert (group.majority_answer, group.majority_correct) == ("\\\\", False)
    assert (group.synthesis_answer, group.synthesis_correct, group.disagrees) == ("5", True, True)


class Unreadable:
    """Answers with a '?' cannot be parsed; the rest compare as text."""

    async def check(self, reference, candidate):
        if "?" in reference:
            return EquivalenceResult(None, "unparseable_reference")
        return EquivalenceResult(False if "?" in candidate else reference == candidate)


async def test_pseudo_label_comparison_rules(checker):
    differ = ItemScorer(None, Unreadable())._differ
    assert await differ("?a", "?a ") is False  # same text
    assert await differ("?a", "?b") is True  # both unreadable, different text
    assert await differ("?a", "5") is True and await differ("5", "?a") is True
    assert await differ("5", "5") is False and await differ("5", "6") is True
    with pytest.raises(Exception, match="answer_check_failed: timeout"):
        await ItemScorer(None, TimingOut(checker))._differ("9", "5")
