"""The CaT pipeline for one group: estimate a reference, then derive a reward per rollout.

    rubric      reference -> self-proposed rubric (anchor) -> yes/no verdicts (judge) -> fraction met
    verifiable  reference -> final answer -> math equivalence per rollout -> 1 / 0
    judge       reference -> equivalence verdict per rollout (judge) -> 1 / 0   (the paper's baseline)
"""

from __future__ import annotations

import hashlib
import json
import time

from .aggregators import AGGREGATORS
from .answer_extraction import extract_answer
from .context import GroupContext
from .errors import InvalidGroup
from .concurrency import gather_bounded
from .judge import ask_yes_no, equivalence_messages, verdict_messages
from .ports import AnswerChecker, Roles
from .prompts import PromptSet
from .reward_rules import binary_reward, rubric_reward
from .self_proposed_rubrics import propose_rubric
from .types import Criterion, Group, GroupOutcome, Reference, RolloutOutcome

EQUIVALENCE_ID = "equivalent"


def rubric_fingerprint(reference: str, criteria: list[Criterion], anchor_model: str, prompt_version: str) -> str:
    payload = json.dumps(
        {
            "reference": reference,
            "criteria": [[c.text, c.weight] for c in criteria],
            "anchor_model": anchor_model,
            "prompt_version": prompt_version,
        },
        sort_keys=True,
    )
    return "rb_" + hashlib.sha256(payload.encode()).hexdigest()[:24]


class CaTPipeline:
    """Scores groups. Holds no per-group state, so one instance serves every request."""

    def __init__(self, roles: Roles, prompts: PromptSet, checker: AnswerChecker) -> None:
        self.roles = roles
        self.prompts = prompts
        self.checker = checker

    async def score(self, group: Group) -> GroupOutcome:
        if not group.rollouts:
            raise InvalidGroup("a group needs at least one rollout", param="rollouts")
        aggregator = AGGREGATORS.get(group.options.aggregator)
        if aggregator is None:
            raise InvalidGroup(f"unknown aggregator {group.options.aggregator!r}", param="options.aggregator")
        ctx = GroupContext(group=group, roles=self.roles, prompts=self.prompts, checker=self.checker)
        started = time.perf_counter()

        reference = await self._timed(ctx, "reference", aggregator(ctx))
        flags: list[str] = []
        if reference.details.get("truncated"):
            flags.append("reference_truncated")
        rubric: list[Criterion] = []
        rubric_id = None
        if group.mode == "verifiable":
            rollouts = await self._timed(ctx, "scoring", self._score_verifiable(ctx, reference, flags))
        elif group.mode == "rubric":
            if not reference.text.strip():
                raise InvalidGroup("rubric mode needs a non-empty reference", param="reference")
            rubric, rubric_info = await self._timed(ctx, "rubric", propose_rubric(ctx, reference))
            reference.details["rubric"] = rubric_info
            rubric_id = rubric_fingerprint(reference.text, rubric, self.roles.anchor.model, self.prompts.version)
            rollouts = await self._timed(ctx, "scoring", self._score_rubric(ctx, rubric))
        elif group.mode == "judge":
            rollouts = await self._timed(ctx, "scoring", self._score_equivalence(ctx, reference))
        else:
            raise InvalidGroup(f"unknown mode {group.mode!r}", param="mode")

        if any(r.reward is None for r in rollouts):
            flags.append("incomplete_rewards")
        ctx.usage.total_latency_s = time.perf_counter() - started
        return GroupOutcome(
            mode=group.mode,
            reference=reference,
            rubric=rubric,
            rollouts=rollouts,
            flags=flags,
            usage=ctx.usage,
            rubric_id=rubric_id,
            anchor_model=self.roles.anchor.model,
            judge_model=self.roles.judge.model,
            prompt_version=self.prompts.version,
        )

    @staticmethod
    async def _timed(ctx: GroupContext, phase: str, awaitable):
        started = time.perf_counter()
        try:
            return await awaitable
        finally:
            ctx.usage.phases[phase] = ctx.usage.phases.get(phase, 0.0) + time.perf_counter() - started

    async def _score_verifiable(self, ctx: GroupContext, reference: Reference, flags: list[str]) -> list[RolloutOutcome]:
        extractors = ctx.options.answer_extractors
        if reference.answer is None and reference.aggregator != "majority":
            reference.answer, reference.details["extractor"] = extract_answer(reference.text, extractors)
            if reference.answer is None and reference.aggregator == "given" and reference.text.strip():
                # A caller's gold answer is often the bare answer ("42"), with nothing to extract.
                reference.answer, reference.details["extractor"] = reference.text.strip(), "whole_reference"
        outcomes = []
        for index, rollout in enumerate(ctx.group.rollouts):
            answer, extractor = extract_answer(rollout, extractors)
            outcomes.append(RolloutOutcome(index=index, reward=None, extracted_answer=answer, extractor=extractor))
        if reference.answer is None:
            flags.append("reference_no_answer")
            for outcome in outcomes:
                outcome.error = "reference_no_answer"
            return outcomes

        async def check(outcome: RolloutOutcome) -> None:
            if outcome.extracted_answer is None:
                outcome.reward = 0.0
                outcome.flags.append("no_answer")
                return
            result = await ctx.equivalent(reference.answer, outcome.extracted_answer)
            if result.equivalent is None:
                outcome.error = f"answer_check_failed: {result.error}"
            else:
                outcome.reward = binary_reward(result.equivalent)

        await gather_bounded([check(o) for o in outcomes], limit=len(outcomes))
        return outcomes

    async def _score_rubric(self, ctx: GroupContext, rubric: list[Criterion]) -> list[RolloutOutcome]:
        # Rollout-major order: each rollout's criteria are asked back to back, sharing a prefix.
        jobs = [
            ask_yes_no(ctx, verdict_messages(ctx, rollout, criterion.text), criterion.id, "verdict")
            for rollout in ctx.group.rollouts
            for criterion in rubric
        ]
        verdicts = await gather_bounded(jobs, limit=ctx.options.verdict_concurrency)
        n = len(rubric)
        outcomes = []
        for index in range(len(ctx.group.rollouts)):
            mine = verdicts[index * n : (index + 1) * n]
            reward = rubric_reward(rubric, mine)
            outcome = RolloutOutcome(index=index, reward=reward, verdicts=mine)
            if reward is None:
                outcome.error = "verdict_failed: " + ", ".join(v.criterion_id for v in mine if v.met is None)
            outcomes.append(outcome)
        return outcomes

    async def _score_equivalence(self, ctx: GroupContext, reference: Reference) -> list[RolloutOutcome]:
        jobs = [
            ask_yes_no(ctx, equivalence_messages(ctx, reference.text, rollout), EQUIVALENCE_ID, "equivalence")
            for rollout in ctx.group.rollouts
        ]
        verdicts = await gather_bounded(jobs, limit=ctx.options.verdict_concurrency)
        outcomes = []
        for index, verdict in enumerate(verdicts):
            outcome = RolloutOutcome(index=index, reward=binary_reward(verdict.met), verdicts=[verdict])
            if verdict.met is None:
                outcome.error = f"verdict_failed: {verdict.error}"
            outcomes.append(outcome)
        return outcomes
