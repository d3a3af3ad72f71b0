"""Aggregation: how one rollout's verdicts on a rubric become its reward.

One formula, four ways to weigh and read the verdicts (``options.aggregation``):

    fraction        the paper's rule (and HealthBench's): Σ w·met / Σ positive w, clipped to [0, 1],
                    with w the criterion's own weight: 1 for a self-proposed criterion (so the
                    reward is the fraction met), -1 for a self-proposed pitfall, the caller's
                    points for a supplied one. The default.
    weighted        the same, with w from the importance map (``ImportanceWeights``: essential,
                    important, optional; a met pitfall subtracts its weight), so the reward is the
                    weighted fraction minus the pitfalls, clipped to [0, 1]. A criterion without an
                    importance keeps its own weight.
    all_essential   1 when every essential criterion is met and no pitfall is; otherwise the
                    weighted reward times ``essential_factor`` (0.5 by default). A criterion
                    without an importance counts as essential, so on a plain rubric this is
                    "all met, or half the fraction".
    soft            ``fraction`` with P(yes) in place of met: for a plain rubric, the mean P(yes)
                    over criteria. Needs the judge's logprobs.

A missing verdict (or a missing P(yes) in ``soft``) makes the reward uncomputable: None with a
reason, never a silent 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .types import Criterion, GroupOptions, ImportanceWeights, Verdict


class Uncomputable(Exception):
    """Why a rollout's reward cannot be computed (the message goes to its ``error``)."""


def criterion_weight(criterion: Criterion, aggregation: str, weights: ImportanceWeights) -> float:
    if aggregation in ("weighted", "all_essential") and criterion.importance is not None:
        return weights.weight(criterion.importance)
    if criterion.importance == "pitfall" and criterion.weight > 0:
        return -criterion.weight
    return criterion.weight


def _weighted_fraction(weights: list[float], scores: list[float]) -> float:
    positive = sum(w for w in weights if w > 0)
    if positive <= 0:
        raise Uncomputable("no_positive_weight: no criterion of this rubric carries a positive weight")
    earned = sum(w * s for w, s in zip(weights, scores))
    return min(1.0, max(0.0, earned / positive))


def aggregate(criteria: Sequence[Criterion], verdicts: Sequence[Verdict], options: GroupOptions) -> float:
    """The reward of one rollout. Raises ``Uncomputable``; ``ValueError`` when the verdicts do not
    match the criteria (a bug, not an input)."""
    by_id = {v.criterion_id: v for v in verdicts}
    if set(by_id) != {c.id for c in criteria} or len(verdicts) != len(criteria):
        raise ValueError("verdicts must cover every criterion exactly once")
    ordered = [by_id[c.id] for c in criteria]
    missing = [v.criterion_id for v in ordered if v.met is None]
    if missing:
        raise Uncomputable("verdict_failed: " + ", ".join(missing))
    mode = options.aggregation
    weights = [criterion_weight(c, mode, options.weights) for c in criteria]
    if mode == "soft":
        no_p = [v.criterion_id for v in ordered if v.p_yes is None]
        if no_p:
            raise Uncomputable("p_yes_unavailable: the judge gave no yes/no logprobs for " + ", ".join(no_p))
        return _weighted_fraction(weights, [float(v.p_yes) for v in ordered])  # type: ignore[arg-type]
    met = [1.0 if v.met else 0.0 for v in ordered]
    reward = _weighted_fraction(weights, met)
    if mode == "all_essential":
        essentials_met = all(v.met for c, v in zip(criteria, ordered) if not c.pitfall and c.importance in (None, "essential"))
        pitfall_met = any(v.met for c, v in zip(criteria, ordered) if c.pitfall)
        return 1.0 if essentials_met and not pitfall_met else reward * options.essential_factor
    if mode not in ("fraction", "weighted"):
        raise ValueError(f"unknown aggregation {mode!r}")
    return reward


def aggregator(criteria: Sequence[Criterion], options: GroupOptions) -> Callable[[Sequence[Verdict]], float]:
    """``aggregate(criteria, verdicts, options)`` for the rollouts of one group, with what depends
    on the rubric alone (ids, weights, their positive sum, essentials, pitfalls) found once. The
    rollouts' verdicts come in the rubric's order; those that do not (or a rubric with an id twice,
    an aggregation other than the exact ones, weights that raise) go through ``aggregate``, as do
    their errors. The same float operations in the same order: the same rewards."""
    criteria = list(criteria)
    mode = options.aggregation

    def slow(verdicts: Sequence[Verdict]) -> float:
        return aggregate(criteria, verdicts, options)

    ids = [c.id for c in criteria]
    if mode not in ("fraction", "weighted", "all_essential") or not all(type(i) is str for i in ids) or len(set(ids)) != len(ids):
        return slow
    try:
        weights = [criterion_weight(c, mode, options.weights) for c in criteria]
    except Exception:  # noqa: BLE001 - raised per rollout, after the verdicts' own checks, as before
        return slow
    positive = sum(w for w in weights if w > 0)
    essentials = [i for i, c in enumerate(criteria) if not c.pitfall and c.importance in (None, "essential")]
    pitfalls = [i for i, c in enumerate(criteria) if c.pitfall]
    factor = options.essential_factor

    def reward(verdicts: Sequence[Verdict]) -> float:
        if [v.criterion_id for v in verdicts] != ids:
            return slow(verdicts)
        missing = [v.criterion_id for v in verdicts if v.met is None]
        if missing:
            raise Uncomputable("verdict_failed: " + ", ".join(missing))
        if positive <= 0:
            raise Uncomputable("no_positive_weight: no criterion of this rubric carries a positive weight")
        earned = sum(w * s for w, s in zip(weights, [1.0 if v.met else 0.0 for v in verdicts]))
        value = min(1.0, max(0.0, earned / positive))
        if mode == "all_essential":
            essentials_met = all(verdicts[i].met for i in essentials)
            pitfall_met = any(verdicts[i].met for i in pitfalls)
            return 1.0 if essentials_met and not pitfall_met else value * factor
        return value

    return reward


def scoring_record(criteria: Sequence[Criterion], options: GroupOptions) -> dict:
    """What the audit keeps about the aggregation: the mode, the map and each criterion's weight."""
    record: dict = {
        "aggregation": options.aggregation,
        "criterion_weights": {c.id: criterion_weight(c, options.aggregation, options.weights) for c in criteria},
    }
    if options.aggregation in ("weighted", "all_essential"):
        w = options.weights
        record["weights"] = {"essential": w.essential, "important": w.important, "optional": w.optional, "pitfall": w.pitfall}
    if options.aggregation == "all_essential":
        record["essential_factor"] = options.essential_factor
    return record
