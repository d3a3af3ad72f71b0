"""The result document of a scored group: what the audit history keeps for it and what the
service answers with.

One function turns an engine outcome into plain JSON-ready data. The history stores it as the
record's ``result``; ``GET /rubrics/{id}`` serves it back; the HTTP layer declares its shape as
the ``RewardResponse`` wire model and sends it as the response. Keeping the document here, in the
service layer, means the service never needs the HTTP layer's models to write its records.
"""

from __future__ import annotations

from .engine.types import Criterion, Diagnostics, GroupOutcome, RolloutOutcome, Verdict


def criterion_document(c: Criterion) -> dict:
    document = {"id": c.id, "text": c.text, "weight": c.weight, "source": c.source, "tags": list(c.tags)}
    if c.importance is not None:
        document["importance"] = c.importance
    return document


def verdict_document(v: Verdict) -> dict:
    document = v.__dict__.copy()  # a group has G x n of them: the plain dict copy, no dict() call
    if v.members:
        document["members"] = [dict(m.__dict__) for m in v.members]
    else:  # a single judge: the verdict as it always was
        del document["members"], document["spread"]
    return document


def rollout_documents(rollouts: list[RolloutOutcome]) -> list[dict]:
    documents = []
    for r in rollouts:
        document = {
            "index": r.index,
            "reward": r.reward,
            "verdicts": [verdict_document(v) for v in r.verdicts],
            "extracted_answer": r.extracted_answer,
            "extractor": r.extractor,
            "flags": list(r.flags),
            "error": r.error,
            "raw_reward": r.raw_reward,
            "policy": r.policy,
            "canary": None if r.canary is None else r.canary.__dict__.copy(),
        }
        if r.length is not None:
            document["length"] = dict(r.length)
        documents.append(document)
    return documents


def diagnostics_document(d: Diagnostics) -> dict:
    return {
        "reward_mean": d.reward_mean,
        "reward_std": d.reward_std,
        "zero_variance": d.zero_variance,
        "criteria": [s.__dict__.copy() for s in d.criteria],
        "discriminating_criteria": d.discriminating_criteria,
        "regenerated": d.regenerated,
        "canary_yes": d.canary_yes,
        "canary_judged": d.canary_judged,
        "judge_unreliable": d.judge_unreliable,
    }


def result_document(outcome: GroupOutcome, *, record_id: str, prompt_hash: str) -> dict:
    """The whole result of one group, as the history keeps it and the API sends it."""
    usage = outcome.usage
    latency = {phase: round(s * 1000, 3) for phase, s in usage.phases.items()}
    latency["total"] = round(usage.total_latency_s * 1000, 3)
    supplied = outcome.supplied
    return {
        "rewards": outcome.rewards,
        "mode": outcome.mode,
        "aggregator": outcome.reference.aggregator,
        "reference": outcome.reference.text,
        "reference_answer": outcome.reference.answer,
        "reference_details": outcome.reference.details,
        "record_id": record_id,
        "rubric_id": record_id if outcome.mode == "rubric" else None,
        "prompt_hash": prompt_hash,
        "rubric": [criterion_document(c) for c in outcome.rubric],
        "details": rollout_documents(outcome.rollouts),
        "flags": list(outcome.flags),
        "injection_policy": outcome.injection_policy,
        "diagnostics": diagnostics_document(outcome.diagnostics),
        "supplied": None
        if supplied is None
        else {
            "rewards": supplied.rewards,
            "rubric": [criterion_document(c) for c in supplied.rubric],
            "details": rollout_documents(supplied.rollouts),
            "diagnostics": diagnostics_document(supplied.diagnostics),
        },
        "scoring": outcome.scoring,
        "provenance": {
            "anchor_model": outcome.anchor_model,
            "judge_model": outcome.judge_model,
            "prompt_version": outcome.prompt_version,
        },
        "usage": {
            "llm_calls": usage.llm_calls,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "latency_ms": latency,
            "cache_hits": dict(usage.cache_hits),
            "stages": {
                name: {
                    "calls": s.calls,
                    "prompt_tokens": s.prompt_tokens,
                    "completion_tokens": s.completion_tokens,
                    "latency_ms": round(s.latency_s * 1000, 3),
                }
                for name, s in usage.stages.items()
            },
        },
    }
