"""Majority vote over the rollouts' final answers (as in TTRL). Answers are grouped by
mathematical equivalence, not by string; ties go to the answer seen first."""

from __future__ import annotations

from ..answer_extraction import extract_answer
from ..context import GroupContext
from ..errors import InvalidGroup
from ..types import Reference


async def cluster_answers(ctx: GroupContext) -> tuple[list[tuple[str | None, str | None]], list[tuple[str, list[int]]]]:
    """Each rollout's (answer, extractor), and the answers grouped by equivalence:
    [(representative answer, member rollout indices)] in first-seen order."""
    group = ctx.group
    answers = [extract_answer(r, group.options.answer_extractors) for r in group.rollouts]
    clusters: list[tuple[str, list[int]]] = []
    for index, (answer, _) in enumerate(answers):
        if answer is None:
            continue
        for representative, members in clusters:
            if representative == answer or (await ctx.equivalent(representative, answer)).equivalent:
                members.append(index)
                break
        else:
            clusters.append((answer, [index]))
    return answers, clusters


async def majority_vote(ctx: GroupContext) -> Reference:
    group = ctx.group
    if group.mode != "verifiable":
        raise InvalidGroup("aggregator 'majority' works only with mode 'verifiable'", param="options.aggregator")
    _, clusters = await cluster_answers(ctx)
    answered = sum(len(m) for _, m in clusters)
    details: dict = {"answered": answered, "distinct_answers": len(clusters)}
    if not clusters:
        details["majority_ratio"] = 0.0
        return Reference(text="", aggregator="majority", answer=None, details=details)
    representative, members = max(clusters, key=lambda c: len(c[1]))  # max keeps the first on ties
    details["majority_ratio"] = len(members) / len(group.rollouts)
    details["votes"] = len(members)
    return Reference(
        text=group.rollouts[members[0]], aggregator="majority", answer=representative, details=details
    )
