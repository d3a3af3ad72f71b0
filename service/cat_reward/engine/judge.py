"""The independent judge: one yes/no verdict per (rollout, criterion), or per rollout for the
equivalence baseline.

Prompts put what is shared first (instructions, then the response) and the criterion last,
so a prefix-caching server reuses the response's KV blocks across criteria. Where the backend
returns logprobs, P(yes) is read from the first answer position, normalised over yes/no
tokens. A verdict that cannot be parsed is asked again; if it still cannot, it is reported as
an error, never counted as "no".
"""

from __future__ import annotations

import math
import re

from .context import GroupContext
from .ports import ChatRequest, ChatResult
from .types import Verdict

YES_NO = ("yes", "no")
_WORD = re.compile(r"[a-z]+")
# The fence tags, and what could pass for them: spaced, HTML-escaped, full-width brackets.
_FENCE = re.compile(r"(?:<|&lt;|\uff1c)\s*(/?)\s*(response|reference)\s*(?:>|&gt;|\uff1e)", re.IGNORECASE)
TOP_LOGPROBS = 10


def fence(text: str) -> str:
    """Neutralise look-alikes of the tags that delimit data in judge prompts."""
    return _FENCE.sub(lambda m: f"\u2039{m.group(1)}{m.group(2)}\u203a", text.strip())


def parse_yes_no(text: str) -> bool | None:
    match = _WORD.search(text.lower())
    if not match:
        return None
    word = match.group(0)
    if word in ("yes", "true"):
        return True
    if word in ("no", "false"):
        return False
    return None


def _token_class(token: str) -> str | None:
    word = token.strip().strip(".,!:;\"'").lower()
    return word if word in YES_NO else None


def p_yes(top_logprobs: list[dict[str, float]] | None) -> float | None:
    """P(yes) / (P(yes) + P(no)) at the first generated position that offers either."""
    for position in top_logprobs or []:
        mass = {"yes": 0.0, "no": 0.0}
        for token, logprob in position.items():
            cls = _token_class(token)
            if cls is not None and logprob is not None and logprob > -math.inf:
                mass[cls] += math.exp(logprob)
        total = mass["yes"] + mass["no"]
        if total > 0:
            return mass["yes"] / total
    return None


def verdict_messages(ctx: GroupContext, response: str, criterion: str) -> list[dict[str, str]]:
    prompts = ctx.prompts
    return [
        {"role": "system", "content": prompts.render("verdict.system")},
        {"role": "user", "content": prompts.render("verdict.user", response=fence(response), criterion=criterion)},
    ]


def equivalence_messages(ctx: GroupContext, reference: str, response: str) -> list[dict[str, str]]:
    prompts = ctx.prompts
    return [
        {"role": "system", "content": prompts.render("equivalence.system")},
        {
            "role": "user",
            "content": prompts.render("equivalence.user", reference=fence(reference), response=fence(response)),
        },
    ]


async def ask_yes_no(ctx: GroupContext, messages: list[dict[str, str]], criterion_id: str, stage: str) -> Verdict:
    """One verdict, asked up to ``verdict_attempts`` times until it parses."""
    attempts = ctx.options.verdict_attempts
    last: ChatResult | None = None
    for attempt in range(1, attempts + 1):
        temperature = ctx.options.judge_temperature if attempt == 1 else max(ctx.options.judge_temperature, 0.7)
        last = await ctx.judge(
            ChatRequest(
                messages=messages,
                stage=stage,  # type: ignore[arg-type]
                max_tokens=3,
                temperature=temperature,
                seed=None if ctx.options.seed is None else ctx.options.seed + attempt - 1,
                choices=YES_NO,
                top_logprobs=TOP_LOGPROBS,
            )
        )
        met = parse_yes_no(last.text)
        if met is not None:
            return Verdict(criterion_id, met=met, p_yes=p_yes(last.top_logprobs), raw=last.text, attempts=attempt)
    return Verdict(
        criterion_id,
        met=None,
        p_yes=p_yes(last.top_logprobs) if last else None,
        raw=last.text if last else None,
        attempts=attempts,
        error="verdict_unparseable",
    )
