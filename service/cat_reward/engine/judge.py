"""The independent judge: one yes/no verdict per (rollout, criterion), or per rollout for the
equivalence baseline.

Prompts put what is shared first (instructions, then the response) and the criterion last,
so a prefix-caching server reuses the response's KV blocks across criteria. Where the backend
returns logprobs, P(yes) is read from the first answer position, normalised over yes/no
tokens. A verdict that cannot be parsed is asked again; if it still cannot, it is reported as
an error, never counted as "no".

When the judge can score yes/no in batches (``ports.YesNoScorer``, e.g. vLLM's completions
endpoint), every verdict of a group is one generated token: the same messages, rendered with
the judge's chat template, sent together. A token that is neither yes nor no counts as an
unparseable first attempt: the verdict is asked again through the chat path.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from .concurrency import gather_bounded
from .context import GroupContext
from .ports import ChatRequest, ChatResult, ScoringUnavailable
from .types import Verdict, frozen_constructor


YES_NO = ("yes", "no")
_WORD = re.compile(r"[a-z]+")
# The fence tags, and what could pass for them: spaced, HTML-escaped, full-width brackets.
_FENCE = re.compile(r"(?:<|&lt;|\uff1c)\s*(/?)\s*(response|reference)\s*(?:>|&gt;|\uff1e)", re.IGNORECASE)
TOP_LOGPROBS = 10
_verdict = frozen_constructor(Verdict)
_MINUS_INF = -math.inf
_exp = math.exp


def _fence_tag(m: re.Match) -> str:
    return f"\u2039{m.group(1)}{m.group(2)}\u203a"


@lru_cache(maxsize=64)
def fence(text: str) -> str:
    """Neutralise look-alikes of the tags that delimit data in judge prompts. Cached (a few
    groups' rollouts: they may be long): a rollout is fenced for its canary, then at once for its
    rubric verdicts."""
    text = text.strip()
    # Every match starts with "<", "&" (of "&lt;", any case) or a full-width "<": text without
    # them (most rollouts) skips the regex, whose leading alternation is tried at every character.
    if "<" not in text and "&" not in text and "\uff1c" not in text:
        return text
    return _FENCE.sub(_fence_tag, text)


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


@lru_cache(maxsize=4096)
def _token_class(token: str) -> str | None:
    word = token.strip().strip(".,!:;\"'").lower()
    return word if word in YES_NO else None


def p_yes(top_logprobs: list[dict[str, float]] | None) -> float | None:
    """P(yes) / (P(yes) + P(no)) at the first generated position that offers either."""
    for position in top_logprobs or ():
        probability = _position_p_yes(position)
        if probability is not None:
            return probability
    return None


def _position_p_yes(position: dict[str, float]) -> float | None:
    """P(yes) / (P(yes) + P(no)) at one position, None if it offers neither."""
    yes = no = 0.0
    for token, logprob in position.items():
        cls = _token_class(token)
        if cls is not None and logprob is not None and logprob > _MINUS_INF:
            if cls == "yes":
                yes += _exp(logprob)
            else:
                no += _exp(logprob)
    total = yes + no
    return yes / total if total > 0 else None


_STATIC: dict[tuple[str, str], str] = {}


def _static(ctx: GroupContext, template: str) -> str:
    """A template without placeholders, rendered once per prompt-set version."""
    key = (ctx.prompts.version, template)
    if key not in _STATIC:
        _STATIC[key] = ctx.prompts.render(template)
    return _STATIC[key]


def verdict_variants(prompts) -> list[str]:
    """The verdict prompt variants of a prompt set: ``verdict`` and its paraphrases ``verdict_p1``, ..."""
    return sorted(name[: -len(".user")] for name in prompts.templates if name.startswith("verdict") and name.endswith(".user"))


_VERDICT_PARTS: dict[tuple[str, str], tuple[str, tuple[str, str, str] | None]] = {}


def _verdict_parts(ctx: GroupContext, variant: str) -> tuple[str, tuple[str, str, str] | None]:
    """A verdict variant's system text, and its user template as (before the response, between
    the response and the criterion, after the criterion) when it has exactly that shape (else
    None: rendered by ``PromptSet.render``, with its checks). Once per prompt-set version."""
    key = (ctx.prompts.version, variant)
    parts = _VERDICT_PARTS.get(key)
    if parts is None:
        prompts = ctx.prompts
        system = f"{variant}.system" if f"{variant}.system" in prompts.templates else "verdict.system"
        pieces = prompts.pieces(f"{variant}.user") if f"{variant}.user" in prompts.templates else None
        split = None
        if pieces is not None and len(pieces) == 5 and pieces[1] == "response" and pieces[3] == "criterion":
            split = (pieces[0], pieces[2], pieces[4])
        parts = _VERDICT_PARTS[key] = (_static(ctx, system), split)
    return parts


def verdict_messages(
    ctx: GroupContext, response: str, criterion: str, *, fenced: str | None = None, variant: str = "verdict"
) -> list[dict[str, str]]:
    """``fenced``: ``fence(response)`` when the caller already has it (one per rollout, not per
    criterion). ``variant``: a paraphrase of the verdict prompt (``verdict_p1``, ...)."""
    system, split = _verdict_parts(ctx, variant)
    if fenced is None:
        fenced = fence(response)
    if split is None:
        user = ctx.prompts.render(f"{variant}.user", response=fenced, criterion=criterion)
    else:
        user = "".join((split[0], fenced, split[1], criterion, split[2]))  # one copy of the (long) response
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def verdict_conversations(
    ctx: GroupContext, fenced: list[str], criteria: list[str], *, variant: str = "verdict"
) -> list[list[dict[str, str]]]:
    """``verdict_messages(ctx, _, c, fenced=f, variant=variant)`` for every fenced rollout ``f``
    and criterion ``c``, rollout-major; each rollout's part of the prompt is built once, not once
    per criterion."""
    system, split = _verdict_parts(ctx, variant)
    if split is None:
        return [verdict_messages(ctx, f, c, fenced=f, variant=variant) for f in fenced for c in criteria]
    before, between, after = split
    heads = [before + f + between for f in fenced]
    tails = [c + after for c in criteria]
    return [[{"role": "system", "content": system}, {"role": "user", "content": head + tail}] for head in heads for tail in tails]


def equivalence_messages(ctx: GroupContext, reference: str, response: str) -> list[dict[str, str]]:
    prompts = ctx.prompts
    return [
        {"role": "system", "content": _static(ctx, "equivalence.system")},
        {
            "role": "user",
            "content": prompts.render("equivalence.user", reference=fence(reference), response=fence(response)),
        },
    ]


async def ask_yes_no(
    ctx: GroupContext,
    messages: list[dict[str, str]],
    criterion_id: str,
    stage: str,
    *,
    first_attempt: int = 1,
    previous: tuple[str, float | None] | None = None,
    client=None,
) -> Verdict:
    """One verdict, asked up to ``verdict_attempts`` times until it parses. ``first_attempt`` > 1
    continues after attempts made elsewhere (a single-token score); ``previous`` is the last
    unparseable (raw, p_yes), reported if no attempt is left."""
    attempts = ctx.options.verdict_attempts
    last: ChatResult | None = None
    for attempt in range(first_attempt, attempts + 1):
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
            ),
            client,
        )
        met = parse_yes_no(last.text)
        if met is not None:
            return Verdict(criterion_id, met=met, p_yes=p_yes(last.top_logprobs), raw=last.text, attempts=attempt)
    if last is not None:
        raw, probability = last.text, p_yes(last.top_logprobs)
    else:
        raw, probability = previous if previous is not None else (None, None)
    return Verdict(
        criterion_id,
        met=None,
        p_yes=probability,
        raw=raw,
        attempts=max(attempts, first_attempt - 1),
        error="verdict_unparseable",
    )


async def can_score(ctx: GroupContext, client=None) -> bool:
    """Whether the judge offers batched single-token scoring and its backend has it."""
    check = getattr(client or ctx.roles.judge, "yes_no_scoring", None)
    return check is not None and await check()


def token_verdict(token: str) -> bool | None:
    """The verdict a single generated token gives: yes / no in any case or spacing, else None."""
    cls = _token_class(token)
    return None if cls is None else cls == "yes"


async def judge_all(
    ctx: GroupContext, asks: list[tuple[list[dict[str, str]], str]], stage: str, client=None
) -> list[Verdict]:
    """Every (messages, criterion_id) verdict: as single-token scores in shared batches when the
    judge can, else (or for tokens that are neither yes nor no) one chat call each. ``client``:
    an ensemble member's judge; default the main one."""
    opts = ctx.options
    if not asks:
        return []
    scores = None
    judge = client or ctx.roles.judge
    if await can_score(ctx, judge):
        try:
            prompts = await judge.render_prompts([messages for messages, _ in asks])
            scores = await ctx.judge_scores(
                prompts, stage, temperature=opts.judge_temperature, seed=opts.seed, choices=YES_NO, client=judge
            )
        except ScoringUnavailable:
            scores = None
    if scores is None:
        return await gather_bounded(
            [ask_yes_no(ctx, messages, cid, stage, client=judge) for messages, cid in asks], limit=opts.verdict_concurrency
        )
    verdicts: list[Verdict | None] = []
    retry = []
    for i, ((_, cid), score) in enumerate(zip(asks, scores)):
        text = score.text
        cls = _token_class(text)  # token_verdict's class
        probability = _position_p_yes(score.top_logprobs)  # p_yes of the one position
        if cls is None:
            verdicts.append(None)
            retry.append((i, (text, probability)))
        else:
            verdicts.append(_verdict(cid, met=cls == "yes", p_yes=probability, raw=text, attempts=1))
    if retry:
        again = await gather_bounded(
            [
                ask_yes_no(ctx, asks[i][0], asks[i][1], stage, first_attempt=2, previous=previous, client=judge)
                for i, previous in retry
            ],
            limit=opts.verdict_concurrency,
        )
        for (i, _), verdict in zip(retry, again):
            verdicts[i] = verdict
    return verdicts  # type: ignore[return-value]
