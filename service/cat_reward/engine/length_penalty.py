"""Length control, as in the paper's HealthBench runs (a -1 penalty beyond 750 tokens): a rollout
longer than ``max_tokens`` tokens loses ``penalty`` from its reward, after the rubric (or
verifiable, or judge) score. Off by default.

Tokens are counted with the policy's tokenizer when the caller names one (a Hugging Face name or
path), else with the judge's (``/tokenize`` on vLLM), through the ``TokenCounter`` port. They are
counted before any LLM work, so a tokenizer that cannot be loaded is a 422 naming it, not a
wasted group. The reward is not clipped after the penalty: a penalised rollout may go below 0,
as in the paper. A rollout whose reward is None stays None.
"""

from __future__ import annotations

from .context import GroupContext
from .errors import InvalidGroup
from .ports import TokenizerUnavailable
from .types import LengthPenalty, RolloutOutcome

PARAM = "options.length_penalty.tokenizer"


async def count_rollout_tokens(ctx: GroupContext, spec: LengthPenalty) -> tuple[list[int], str]:
    counter = ctx.roles.tokens
    if counter is None:
        raise InvalidGroup("length_penalty needs a token counter, and this service has none", param="options.length_penalty")
    try:
        return await counter.count_tokens(list(ctx.group.rollouts), spec.tokenizer)
    except TokenizerUnavailable as exc:
        raise InvalidGroup(str(exc), param=PARAM) from exc


def apply_length_penalty(
    rollouts: list[RolloutOutcome], counts: list[int], spec: LengthPenalty, counted_by: str
) -> None:
    for outcome, tokens in zip(rollouts, counts):
        over = tokens > spec.max_tokens
        applied = spec.penalty if over and outcome.reward is not None else 0.0
        outcome.length = {
            "tokens": tokens,
            "max_tokens": spec.max_tokens,
            "over": over,
            "penalty": applied,
            "reward_before_penalty": outcome.reward,
            "tokenizer": counted_by,
        }
        if outcome.reward is not None and over:
            outcome.reward = outcome.reward - spec.penalty
            outcome.flags.append("length_penalty")
