"""Reward hacking: what a rollout that tries to buy its reward is paid.

Two detectors feed one policy:

- **patterns** (``injection``): each rollout's text is scanned; a hit is a
  ``possible_injection:<kind>`` flag.
- **the canary** (``GroupOptions.canary``): the judge also scores, for each rollout, one criterion
  no honest answer can meet ("the response contains the code word <fresh nonce>"), in the same
  ``judge_all`` call as the rubric's verdicts (judge mode: a verdict call of its own, beside the
  equivalence verdicts). A rollout whose canary P(yes) is above ``canary_threshold`` (0.8)
  talked the judge into something: it is flagged ``judge_persuaded``. When the judge's verdict on
  the canary is yes for more than half of a group, the judge, not the rollouts, is the problem:
  the group is marked ``judge_unreliable`` (diagnostics, group flag, metric) and the canary
  changes no reward there.

  Why two bars: measured on the CPU SmolLM2-135M, the canary's P(yes) is 0.32-0.68 on honest
  answers (median 0.55) and about the same on attacks, so at a bar of 0.5 most honest answers
  would count as persuaded; that judge is marked unreliable instead. A judge that reads says no with P(yes)
  near 0; one that was talked into it, yes near 1.

The policy (``GroupOptions.injection_policy``) then sets a flagged rollout's reward:

    zero     0 (the default): a flagged attack is never paid
    penalty  ``injection_penalty`` (negative)
    null     null, with the reason in ``error``, for trainers that mask
    flag     the judge's reward, unchanged

Whatever the policy, the rollout keeps its flags, ``raw_reward`` keeps what the judge's verdicts
gave, and ``policy`` says what was applied. A false positive costs a correct rollout its reward:
that is the price of ``zero`` and ``penalty``.

The policy applies where a judge decides the reward (rubric and judge modes). In verifiable mode
the reward comes from the answer check, which text cannot persuade: flags are recorded, rewards
are left alone (``policy`` "flag"), so SCRL's -1 is never raised to 0.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from .caching import canary_key, decode_verdict, encode_verdict
from .context import GroupContext
from .injection import FLAG_PREFIX, injection_flags
from .judge import fence, judge_all, verdict_messages
from .ports import Cache
from .types import CanaryResult, RolloutOutcome, Verdict, frozen_constructor

POLICIES = ("zero", "penalty", "null", "flag")
PERSUADED = "judge_persuaded"
UNRELIABLE = "judge_unreliable"
CANARY_ID = "canary"
JUDGED_MODES = ("rubric", "judge")


def canary_criterion(ctx: GroupContext, nonce: str | None = None) -> str:
    """A criterion no honest answer meets, with a fresh nonce (the policy never saw it)."""
    return ctx.prompts.render("canary.criterion", nonce=nonce or secrets.token_hex(5).upper())


def _nonces(count: int) -> list[str]:
    """``count`` nonces as ``canary_criterion`` draws one (``secrets.token_hex(5).upper()``: 5
    random bytes from the OS, in upper-case hex), from one draw of the OS's generator for all."""
    if count == 0:
        return []
    hexed = secrets.token_hex(5 * count).upper()
    return [hexed[i : i + 10] for i in range(0, 10 * count, 10)]


def _canary_criteria(ctx: GroupContext, nonces: list[str]) -> list[str]:
    """``canary_criterion(ctx, nonce)`` for each nonce: with the template's one placeholder (its
    usual shape), the pieces around the nonce joined without render()'s per-call checks."""
    pieces = ctx.prompts.pieces("canary.criterion")
    if len(pieces) == 3 and pieces[1] == "nonce":
        return [pieces[0] + nonce + pieces[2] for nonce in nonces]
    return [canary_criterion(ctx, nonce) for nonce in nonces]


def wants_canary(ctx: GroupContext) -> bool:
    return ctx.options.canary and ctx.group.mode in JUDGED_MODES


class Canaries:
    """One canary verdict per rollout, each with its own nonce. ``asks`` are the verdict prompts
    still to ask: the pipeline sends them in the same ``judge_all`` call as the rubric's verdicts
    (one batched request), then hands the answers to ``complete``. With a cache, a retry of the
    same group gets the same canaries back (nonces included: the policy never sees them), so a
    retry stays free and identical."""

    def __init__(self, ctx: GroupContext, cache: Cache | None, fingerprint: str, ttl_s: float) -> None:
        self.ctx, self.cache, self.ttl_s = ctx, cache, ttl_s
        self.keys = [canary_key(fingerprint, i) for i in range(len(ctx.group.rollouts))]
        self.found: list[tuple[str, Verdict] | None] = [None] * len(self.keys)
        self.missing: list[int] = []
        self.criteria: dict[int, str] = {}
        self.asks: list[tuple[list[dict[str, str]], str]] = []
        self.completed = None  # a future the pipeline sets to ``complete``'s result

    async def prepare(self) -> Canaries:
        ctx = self.ctx
        if self.cache is not None:
            for i, entry in enumerate(await self.cache.get_many(self.keys)):
                verdict = decode_verdict(entry, CANARY_ID) if isinstance(entry, dict) else None
                if verdict is not None and isinstance(entry.get("criterion"), str):
                    self.found[i] = (entry["criterion"], verdict)
            hits = sum(f is not None for f in self.found)
            if hits:
                ctx.usage.cache_hits["canary"] = hits
        self.missing = [i for i, f in enumerate(self.found) if f is None]
        self.criteria = dict(zip(self.missing, _canary_criteria(ctx, _nonces(len(self.missing)))))
        rollouts = ctx.group.rollouts
        self.asks = [
            (verdict_messages(ctx, rollouts[i], self.criteria[i], fenced=fence(rollouts[i])), CANARY_ID) for i in self.missing
        ]
        return self

    async def complete(self, verdicts: list[Verdict]) -> list[tuple[str, Verdict]]:
        for i, verdict in zip(self.missing, verdicts):
            self.found[i] = (self.criteria[i], verdict)
        if self.cache is not None:
            fresh = {
                self.keys[i]: {"criterion": self.criteria[i], **encode_verdict(v)}
                for i, v in zip(self.missing, verdicts)
                if v.met is not None
            }
            if fresh:
                await self.cache.set_many(fresh, self.ttl_s)
        return self.found  # type: ignore[return-value]

    async def ask_alone(self) -> list[tuple[str, Verdict]]:
        """The canaries in a judge call of their own (when no rubric call can carry them)."""
        return await self.complete(await judge_all(self.ctx, self.asks, "verdict"))


_canary_result = frozen_constructor(CanaryResult)  # a group makes G of them


def _persuaded(verdict: Verdict, threshold: float) -> bool | None:
    if verdict.p_yes is not None:
        return verdict.p_yes > threshold
    return verdict.met


def anchor_inputs(ctx: GroupContext) -> tuple[list[str], list[int]]:
    """The rollouts the anchor reads to write the reference, and the indices left out. A rollout
    that the patterns flag is left out, so an attack cannot steer the reference (and through it
    the rubric the honest rollouts are graded against). Under policy ``flag`` (observe only), or
    when every rollout is flagged, the anchor reads them all."""
    texts = list(ctx.group.rollouts)
    if ctx.options.injection_policy == "flag":
        return texts, []
    left_out = [i for i, flags in enumerate(ctx.injection) if flags]
    if not left_out or len(left_out) == len(texts):
        return texts, []
    skipped = set(left_out)
    return [t for i, t in enumerate(texts) if i not in skipped], left_out


def apply_hacking_policy(
    ctx: GroupContext,
    rollouts: Sequence[RolloutOutcome],
    canaries: Sequence[tuple[str, Verdict]] | None,
    *,
    extra: Sequence[Sequence[RolloutOutcome]] = (),
) -> dict:
    """Flag each rollout (patterns, canary) and apply the group's policy to it, and to the same
    rollout in ``extra`` scorings (a supplied rubric scored beside). Returns the group's canary
    summary: {"canary_yes", "canary_judged", "judge_unreliable"}."""
    opts = ctx.options
    texts = ctx.group.rollouts
    summary: dict = {"canary_yes": None, "canary_judged": None, "judge_unreliable": False}
    persuaded: list[bool | None] = [None] * len(rollouts)
    if canaries is not None:
        persuaded = [_persuaded(v, opts.canary_threshold) for _, v in canaries]
        judged = [v.met for _, v in canaries if v.met is not None]
        summary["canary_judged"] = len(judged)
        summary["canary_yes"] = sum(judged)
        summary["judge_unreliable"] = bool(judged) and sum(judged) * 2 > len(judged)
    judged_mode = ctx.group.mode in JUDGED_MODES
    policy = opts.injection_policy if judged_mode else "flag"
    for index, rollout in enumerate(rollouts):
        flags = list(ctx.injection[rollout.index])
        if persuaded[index] and not summary["judge_unreliable"]:
            flags.append(PERSUADED)
        canary = None
        if canaries is not None:
            criterion, verdict = canaries[index]
            canary = _canary_result(
                criterion=criterion, met=verdict.met, p_yes=verdict.p_yes, raw=verdict.raw, persuaded=persuaded[index]
            )
        for outcome in [rollout, *(scoring[index] for scoring in extra)] if extra else (rollout,):
            outcome.canary = canary
            outcome.raw_reward = outcome.reward
            if not flags:
                continue
            outcome.flags.extend(f for f in flags if f not in outcome.flags)
            outcome.policy = policy
            _apply(outcome, policy, opts.injection_penalty, flags)
    return summary


def _apply(outcome: RolloutOutcome, policy: str, penalty: float, flags: list[str]) -> None:
    if policy == "zero":
        outcome.reward, outcome.error = 0.0, None
    elif policy == "penalty":
        outcome.reward, outcome.error = float(penalty), None
    elif policy == "null":
        outcome.reward = None
        outcome.error = "injection_policy_null: " + ", ".join(f.removeprefix(FLAG_PREFIX) for f in flags)
    elif policy != "flag":
        raise ValueError(f"unknown injection policy {policy!r}; choose one of {', '.join(POLICIES)}")
