"""SCRL's selective pseudo-labels (arXiv 2603.19880, "What If Consensus Lies?").

The answers of a verifiable group are clustered by math equivalence. The top answer becomes a
positive label only if its share is at least ``min_share`` and it leads the runner-up by more
than ``margin``; an answer becomes a negative label if its share is below ``negative_share``
and its rollouts' mean token entropy is at least the group's mean. Rewards: +1 for the positive
label, -1 for a negative one, 0 otherwise, and -1 when no answer can be extracted.

Entropy comes from the per-rollout token logprobs the caller may send: the mean surprisal
(-log p of each sampled token) estimates the mean token entropy, since the entropy is the
expected surprisal. Without logprobs the entropy gate is off (negatives by share alone), and
the result says so.
"""

from __future__ import annotations

from ..context import GroupContext
from ..errors import InvalidGroup
from ..types import Reference
from .majority import cluster_answers


def mean_surprisal(logprobs) -> float | None:
    values = [-lp for lp in logprobs]
    return sum(values) / len(values) if values else None


async def scrl_labels(ctx: GroupContext) -> Reference:
    group = ctx.group
    if group.mode != "verifiable":
        raise InvalidGroup("aggregator 'scrl' works only with mode 'verifiable'", param="options.aggregator")
    thresholds = group.options.scrl
    g = len(group.rollouts)
    answers, clusters = await cluster_answers(ctx)

    entropies: list[float | None] | None = None
    if group.token_logprobs is not None:
        entropies = [mean_surprisal(lps) for lps in group.token_logprobs]
    known = [e for e in entropies or [] if e is not None]
    gate_on = bool(known)
    group_entropy = sum(known) / len(known) if known else None

    ranked = sorted(clusters, key=lambda c: -len(c[1]))  # stable: ties keep first-seen order
    shares = [len(members) / g for _, members in ranked]
    positive = None
    if ranked:
        runner_up = shares[1] if len(shares) > 1 else 0.0
        if shares[0] >= thresholds.min_share and shares[0] - runner_up > thresholds.margin:
            positive = 0

    labels = ["no_answer" if a is None else "neutral" for a, _ in answers]
    cluster_info = []
    for rank, ((answer, members), share) in enumerate(zip(ranked, shares)):
        entropy = None
        if gate_on:
            member_entropies = [entropies[i] for i in members if entropies[i] is not None]
            entropy = sum(member_entropies) / len(member_entropies) if member_entropies else None
        if rank == positive:
            label = "positive"
        elif share < thresholds.negative_share and (
            not gate_on or (entropy is not None and entropy >= group_entropy)
        ):
            label = "negative"
        else:
            label = "neutral"
        for i in members:
            labels[i] = label
        cluster_info.append({"answer": answer, "share": share, "rollouts": members, "mean_entropy": entropy, "label": label})

    details = {
        "clusters": cluster_info,
        "labels": labels,
        "entropy_gate": "on" if gate_on else "off (no token_logprobs sent)",
        "group_mean_entropy": group_entropy,
        "thresholds": {"min_share": thresholds.min_share, "margin": thresholds.margin,
                       "negative_share": thresholds.negative_share},
    }
    if positive is None:
        return Reference(text="", aggregator="scrl", answer=None, details=details)
    answer, members = ranked[positive]
    return Reference(text=group.rollouts[members[0]], aggregator="scrl", answer=answer, details=details)


SCRL_REWARD = {"positive": 1.0, "negative": -1.0, "neutral": 0.0, "no_answer": -1.0}
