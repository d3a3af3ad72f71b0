"""How verdicts become a reward.

Rubric rewards follow HealthBench's grader, which reduces to CaT's "fraction of criteria met"
when every weight is 1: reward = sum of weights of met criteria / sum of positive weights,
clipped to [0, 1]. A negative weight marks an undesirable behaviour; "met" then means the bad
thing happened, and it subtracts. A missing verdict makes the reward uncomputable (None),
never a silent 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import Criterion, Verdict


def rubric_reward(criteria: Sequence[Criterion], verdicts: Sequence[Verdict]) -> float | None:
    by_id = {v.criterion_id: v for v in verdicts}
    if set(by_id) != {c.id for c in criteria} or len(verdicts) != len(criteria):
        raise ValueError("verdicts must cover every criterion exactly once")
    if any(by_id[c.id].met is None for c in criteria):
        return None
    positive = sum(c.weight for c in criteria if c.weight > 0)
    if positive <= 0:
        raise ValueError("a rubric needs at least one criterion with positive weight")
    earned = sum(c.weight for c in criteria if by_id[c.id].met)
    return min(1.0, max(0.0, earned / positive))


def binary_reward(met: bool | None) -> float | None:
    return None if met is None else (1.0 if met else 0.0)
