"""Signal diagnostics: does a group's reward carry a learning signal?

GRPO's advantage is a reward minus its group's mean, so a group whose rewards are all equal
teaches nothing, and a criterion that every rollout meets (or none does) cannot move a reward
within its group. Both are reported with every result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .types import Criterion, CriterionSignal, Diagnostics, RolloutOutcome


def reward_stats(rewards: Sequence[float | None]) -> tuple[float | None, float | None, bool]:
    """Mean, population standard deviation, and whether the variance is zero (over computed rewards)."""
    values = [r for r in rewards if r is not None]
    if not values:
        return None, None, False
    mean = sum(values) / len(values)
    # Equal rewards, compared directly: summing floats leaves a std of ~1e-17 where there is none.
    if max(values) - min(values) <= 1e-9:
        return mean, 0.0, len(values) > 1
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return mean, std, False


def criterion_signals(rubric: Sequence[Criterion], rollouts: Sequence[RolloutOutcome]) -> list[CriterionSignal]:
    """Per criterion: how many rollouts met it, of how many judged. The verdicts are counted by
    criterion id in one pass (not one pass over all of them per criterion) when every id is a
    string; otherwise as before."""
    verdicts = [v for r in rollouts for v in r.verdicts]
    if all(type(c.id) is str for c in rubric) and all(type(v.criterion_id) is str for v in verdicts):
        counts: dict[str, list[int]] = {c.id: [0, 0] for c in rubric}
        for v in verdicts:
            if v.met is not None:
                count = counts.get(v.criterion_id)
                if count is not None:
                    count[1] += 1
                    if v.met:
                        count[0] += 1
        signals = []
        for criterion in rubric:
            met, judged = counts[criterion.id]
            signals.append(CriterionSignal(criterion.id, met=met, judged=judged, discriminating=0 < met < judged))
        return signals
    signals = []
    for criterion in rubric:
        verdicts = [v for r in rollouts for v in r.verdicts if v.criterion_id == criterion.id and v.met is not None]
        met = sum(1 for v in verdicts if v.met)
        signals.append(CriterionSignal(criterion.id, met=met, judged=len(verdicts), discriminating=0 < met < len(verdicts)))
    return signals


def diagnose(rollouts: Sequence[RolloutOutcome], rubric: Sequence[Criterion] = ()) -> Diagnostics:
    mean, std, zero = reward_stats([r.reward for r in rollouts])
    diagnostics = Diagnostics(reward_mean=mean, reward_std=std, zero_variance=zero)
    if rubric:
        diagnostics.criteria = criterion_signals(rubric, rollouts)
        diagnostics.discriminating_criteria = sum(s.discriminating for s in diagnostics.criteria)
    return diagnostics


def is_flat(diagnostics: Diagnostics) -> bool:
    """Every criterion was met by all rollouts or by none (and there was something to judge)."""
    return bool(diagnostics.criteria) and diagnostics.discriminating_criteria == 0 and all(
        s.judged > 1 for s in diagnostics.criteria
    )
