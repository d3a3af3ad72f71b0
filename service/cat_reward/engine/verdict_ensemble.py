"""Multi-sample / ensemble verdicts: k judges answer every (rollout, criterion) and their P(yes)
is averaged. A member is a configured judge (an endpoint and model: k endpoints or k models)
asked with one verdict prompt variant (k paraphrases), so the three kinds of ensemble are one
mechanism. Each member's verdicts of a group are one batched request where the judge can
score in batches, and the members are asked in parallel (``pipeline``).

Combination, per (rollout, criterion):
    p_i      member i's P(yes); a member without logprobs counts as 1 or 0 from its answer
    P(yes)   mean of p_i (reported only when every member gave logprobs)
    met      mean of p_i >= 0.5
    spread   max p_i - min p_i: the members' disagreement on this verdict
A member that could not give a verdict makes the combined verdict unusable (``met`` None,
``error`` naming the member): an average over fewer judges than asked is not passed off as
the ensemble's.
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import Criterion, EnsembleMember, MemberVerdict, Verdict


def combine(members: Sequence[EnsembleMember], verdicts: Sequence[Verdict]) -> Verdict:
    """One verdict from each member's verdict on the same (rollout, criterion)."""
    criterion_id = verdicts[0].criterion_id
    parts = tuple(
        MemberVerdict(member=m.name, met=v.met, p_yes=v.p_yes, error=v.error) for m, v in zip(members, verdicts)
    )
    attempts = max(v.attempts for v in verdicts)
    cached = all(v.cached for v in verdicts)
    failed = [p.member for p in parts if p.met is None]
    if failed:
        return Verdict(
            criterion_id, met=None, raw="ensemble", attempts=attempts, cached=cached, members=parts,
            error="ensemble_incomplete: no verdict from " + ", ".join(failed),
        )
    scores = [p.p_yes if p.p_yes is not None else (1.0 if p.met else 0.0) for p in parts]
    mean = sum(scores) / len(scores)
    all_logprobs = all(p.p_yes is not None for p in parts)
    return Verdict(
        criterion_id,
        met=mean >= 0.5,
        p_yes=mean if all_logprobs else None,
        raw="ensemble",
        attempts=attempts,
        cached=cached,
        members=parts,
        spread=max(scores) - min(scores),
    )


def disagreement(rubric: Sequence[Criterion], per_rollout: Sequence[Sequence[Verdict]]) -> dict[str, dict]:
    """Per criterion, over the rollouts: the mean spread of the members' P(yes), and the share of
    rollouts on which the members' yes/no answers split."""
    out: dict[str, dict] = {}
    for j, criterion in enumerate(rubric):
        spreads, splits, judged = [], 0, 0
        for verdicts in per_rollout:
            v = verdicts[j]
            if v.spread is None:
                continue
            judged += 1
            spreads.append(v.spread)
            answers = {p.met for p in v.members}
            splits += len(answers) > 1
        out[criterion.id] = {
            "mean_spread": round(sum(spreads) / len(spreads), 4) if spreads else None,
            "split_rate": round(splits / judged, 4) if judged else None,
            "judged": judged,
        }
    return out
