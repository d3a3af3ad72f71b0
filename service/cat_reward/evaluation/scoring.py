"""Score one item's rollouts with the service's own pipeline (``RewardService.score``), in process.

Math (verifiable mode; answers compared with the service's math-verify checker):
    single sample  aggregator ``given`` with the gold answer as reference -> each rollout right or wrong
    majority @ G   aggregator ``majority`` over the first G rollouts -> its answer vs the gold answer
    synthesis @ G  aggregator ``synthesis`` over the first G rollouts -> the reference's answer vs gold
HealthBench (rubric mode, the item's own rubric, ``rubric_source`` supplied):
    single sample  aggregator ``none``: each rollout judged on the rubric
    synthesis @ G  aggregator ``synthesis`` over the first G rollouts gives the anchor's reference
                   (the outcome's reference); that reference is then judged on the rubric

HealthBench scores follow simple-evals: a response's score is Σ points of the criteria it meets
(negative points included) / Σ positive points, *not* clipped per response; the mean over
responses is clipped to [0, 1] (``report``). The service's per-rollout reward, clipped per
rollout, is kept beside it.

Nothing that failed becomes a number: a rollout whose check or verdict failed has
``correct``/``score`` None and an ``error``; a step of a group size that failed has ``error`` set.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field, replace

from ..engine.errors import CatError
from ..engine.ports import AnswerChecker
from ..engine.types import Criterion, Group, GroupOutcome
from ..rewarding import GroupJob
from .datasets import HealthItem, MathItem
from .policy import Completion, PolicyError

MATH_PROMPT = "{problem}\n\nWork through the problem step by step, then give the final answer as \\boxed{{...}}."


def math_messages(item: MathItem) -> list[dict[str, str]]:
    return [{"role": "user", "content": MATH_PROMPT.format(problem=item.problem)}]


def health_messages(item: HealthItem) -> list[dict[str, str]]:
    return [dict(m) for m in item.prompt]


class _CheckFailed(Exception):
    """math-verify could not decide an equivalence (timeout, unparseable gold answer)."""


def describe(exc: BaseException) -> str:
    """``reason: message``; the reason (before the colon) is what the report counts by."""
    if isinstance(exc, _CheckFailed):
        return str(exc)
    if isinstance(exc, PolicyError):
        return f"policy_error: {exc.message}"
    if isinstance(exc, CatError):
        return f"{exc.type}: {exc.message}"
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# --- results -------------------------------------------------------------------------------


@dataclass
class MathRollout:
    text: str
    finish_reason: str | None
    answer: str | None = None  # extracted final answer
    correct: bool | None = None  # None: could not be decided (see error)
    error: str | None = None


@dataclass
class MathGroup:
    """Majority vote and synthesis over the first ``group_size`` rollouts."""

    group_size: int
    majority_answer: str | None = None
    majority_correct: bool | None = None
    synthesis_answer: str | None = None
    synthesis_correct: bool | None = None
    synthesis_no_answer: bool = False  # the synthesis has no extractable final answer (counted wrong)
    majority_no_answer: bool = False  # no rollout had an answer, so no vote (counted wrong)
    disagrees: bool | None = None  # synthesis' final answer differs from the majority's
    synthesis_reference: str | None = None
    synthesis_flags: list[str] = field(default_factory=list)
    error: str | None = None  # set: this group size could not be scored for this item


@dataclass
class MathResult:
    id: str
    problem: str
    gold: str
    meta: dict
    policy_error: str | None = None
    rollouts: list[MathRollout] = field(default_factory=list)
    single_error: str | None = None  # the single-sample call as a whole failed
    groups: list[MathGroup] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class HealthRollout:
    text: str
    finish_reason: str | None
    score: float | None = None  # simple-evals: Σ points met / Σ positive points, unclipped
    reward: float | None = None  # the service's reward: the same, clipped to [0, 1]
    criteria_met: list[bool | None] = field(default_factory=list)  # the judge's verdicts, in rubric order
    error: str | None = None


@dataclass
class HealthGroup:
    group_size: int
    synthesis_reference: str | None = None
    synthesis_score: float | None = None
    synthesis_reward: float | None = None
    synthesis_criteria_met: list[bool | None] = field(default_factory=list)
    synthesis_flags: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class HealthResult:
    id: str
    prompt: list[dict]
    n_criteria: int
    meta: dict
    policy_error: str | None = None
    rollouts: list[HealthRollout] = field(default_factory=list)
    single_error: str | None = None
    groups: list[HealthGroup] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def rubric_scores(outcome: GroupOutcome) -> list[tuple[float | None, str | None, list[bool | None]]]:
    """Per rollout of a supplied-rubric outcome: (unclipped score, error, verdicts in rubric
    order). The score is Σ weights of met criteria / Σ positive weights over the outcome's rubric."""
    weights = {c.id: c.weight for c in outcome.rubric}
    positive = sum(w for w in weights.values() if w > 0)
    scores: list[tuple[float | None, str | None, list[bool | None]]] = []
    for detail in outcome.rollouts:
        verdicts = {v.criterion_id: v.met for v in detail.verdicts}
        met = [verdicts.get(c.id) for c in outcome.rubric]
        if set(verdicts) != set(weights):
            scores.append((None, detail.error or "verdicts do not cover the rubric", met))
        elif any(m is None for m in verdicts.values()) or detail.reward is None:
            scores.append((None, detail.error or "verdict_failed", met))
        else:
            scores.append((sum(weights[c] for c, m in verdicts.items() if m) / positive, None, met))
    return scores


# --- scoring -------------------------------------------------------------------------------


class ItemScorer:
    """Scores items through a ``RewardService`` (``services.rewards``) and an ``AnswerChecker``."""

    def __init__(self, rewards, checker: AnswerChecker, *, seed: int | None = None) -> None:
        self.rewards = rewards
        self.checker = checker
        self.seed = seed

    async def _score(
        self,
        prompt: str | list[dict[str, str]],
        rollouts: list[str],
        mode: str,
        aggregator: str,
        *,
        reference: str | None = None,
        rubric: tuple[Criterion, ...] | None = None,
    ) -> GroupOutcome:
        """One group through the service (its settings' defaults, this run's seed)."""
        options = replace(
            self.rewards.defaults,
            aggregator=aggregator,
            rubric_source="supplied" if rubric else "anchor",
            seed=self.seed,
        )
        group = Group(prompt=prompt, rollouts=list(rollouts), mode=mode, reference=reference, options=options, rubric=rubric)
        return (await self.rewards.score(GroupJob(group=group))).outcome

    async def _same(self, reference: str, candidate: str) -> bool:
        result = await self.checker.check(reference, candidate)
        if result.equivalent is None:
            raise _CheckFailed(f"answer_check_failed: {result.error} ({reference!r} vs {candidate!r})")
        return result.equivalent

    async def _differ(self, first: str, second: str) -> bool:
        """Whether two pseudo-labels differ. Unlike a gold answer, either may be unreadable to
        math-verify: then the other is taken as the reference, and two unreadable answers differ
        unless their text is the same. A timeout is still an error."""
        if first.strip() == second.strip():
            return False
        result = await self.checker.check(first, second)
        if result.equivalent is None and result.error == "unparseable_reference":
            result = await self.checker.check(second, first)
            if result.equivalent is None and result.error == "unparseable_reference":
                return True
        if result.equivalent is None:
            raise _CheckFailed(f"answer_check_failed: {result.error} ({first!r} vs {second!r})")
        return not result.equivalent

    # -- math ----------------------------------------------------------------------------------
    async def score_math(self, item: MathItem, completions: list[Completion], group_sizes: list[int]) -> MathResult:
        result = MathResult(id=item.id, problem=item.problem, gold=item.answer, meta=dict(item.meta))
        result.rollouts = [MathRollout(text=c.text, finish_reason=c.finish_reason) for c in completions]
        texts = [c.text for c in completions]
        single, *groups = await asyncio.gather(
            self._math_single(item, texts, result),
            *(self._math_group(item, texts[:g], g) for g in group_sizes),
        )
        result.groups = list(groups)
        return result

    async def _math_single(self, item: MathItem, texts: list[str], result: MathResult) -> None:
        try:
            response = await self._score(item.problem, texts, "verifiable", "given", reference=item.answer)
        except Exception as exc:  # noqa: BLE001 - recorded, counted, never scored 0
            result.single_error = describe(exc)
            for rollout in result.rollouts:
                rollout.error = result.single_error
            return
        for rollout, detail in zip(result.rollouts, response.rollouts):
            rollout.answer = detail.extracted_answer
            if detail.reward is None:
                rollout.error = detail.error or "reward_null"
            else:
                rollout.correct = detail.reward == 1.0  # no extractable answer: 0, so wrong

    async def _math_group(self, item: MathItem, texts: list[str], g: int) -> MathGroup:
        group = MathGroup(group_size=g)
        try:
            majority, synthesis = await asyncio.gather(
                self._score(item.problem, texts, "verifiable", "majority"),
                self._score(item.problem, texts, "verifiable", "synthesis"),
            )
            group.synthesis_reference = synthesis.reference.text
            group.synthesis_flags = [f for f in synthesis.flags if f != "zero_variance"]
            group.majority_answer = majority.reference.answer
            group.synthesis_answer = synthesis.reference.answer
            group.majority_no_answer = group.majority_answer is None
            group.synthesis_no_answer = group.synthesis_answer is None
            group.majority_correct = False if group.majority_no_answer else await self._same(item.answer, group.majority_answer)
            group.synthesis_correct = (
                False if group.synthesis_no_answer else await self._same(item.answer, group.synthesis_answer)
            )
            if group.majority_no_answer or group.synthesis_no_answer:
                # "No answer" is a value of its own: two missing answers agree, one does not.
                group.disagrees = group.majority_no_answer != group.synthesis_no_answer
            else:
                group.disagrees = await self._differ(group.majority_answer, group.synthesis_answer)
        except Exception as exc:  # noqa: BLE001
            group.error = describe(exc)
        return group

    # -- healthbench -----------------------------------------------------------------------------
    async def _health(self, item: HealthItem, rollouts: list[str], aggregator: str) -> GroupOutcome:
        rubric = tuple(
            Criterion(id=f"s{i + 1}", text=c.criterion, weight=c.points, source="caller", tags=tuple(c.tags))
            for i, c in enumerate(item.rubrics)
        )
        return await self._score([dict(m) for m in item.prompt], rollouts, "rubric", aggregator, rubric=rubric)

    async def score_health(self, item: HealthItem, completions: list[Completion], group_sizes: list[int]) -> HealthResult:
        result = HealthResult(id=item.id, prompt=[dict(m) for m in item.prompt], n_criteria=len(item.rubrics), meta=dict(item.meta))
        result.rollouts = [HealthRollout(text=c.text, finish_reason=c.finish_reason) for c in completions]
        texts = [c.text for c in completions]
        # The rollouts are judged first: the synthesis calls below judge the same (rollout,
        # criterion) pairs again, which the service's verdict cache then answers.
        await self._health_single(item, texts, result)
        result.groups = list(await asyncio.gather(*(self._health_group(item, texts[:g], g) for g in group_sizes)))
        return result

    async def _health_single(self, item: HealthItem, texts: list[str], result: HealthResult) -> None:
        try:
            response = await self._health(item, texts, "none")
        except Exception as exc:  # noqa: BLE001
            result.single_error = describe(exc)
            for rollout in result.rollouts:
                rollout.error = result.single_error
            return
        for rollout, detail, (score, error, met) in zip(result.rollouts, response.rollouts, rubric_scores(response)):
            rollout.score, rollout.reward, rollout.error, rollout.criteria_met = score, detail.reward, error, met

    async def _health_group(self, item: HealthItem, texts: list[str], g: int) -> HealthGroup:
        group = HealthGroup(group_size=g)
        try:
            synthesis = await self._health(item, texts, "synthesis")
            group.synthesis_reference = synthesis.reference.text
            group.synthesis_flags = [f for f in synthesis.flags if f not in ("zero_variance", "incomplete_rewards")]
            judged = await self._health(item, [synthesis.reference.text], "none")
            ((score, error, met),) = rubric_scores(judged)
            group.synthesis_score, group.synthesis_reward, group.error = score, judged.rollouts[0].reward, error
            group.synthesis_criteria_met = met
        except Exception as exc:  # noqa: BLE001
            group.error = describe(exc)
        return group

