"""The CaT pipeline for one group: estimate a reference, then derive a reward per rollout.

    rubric      reference -> self-proposed rubric (anchor) -> yes/no verdicts (judge) -> fraction met
                (``fused``: reference and rubric in one anchor generation)
    verifiable  reference -> final answer -> math equivalence per rollout -> 1 / 0
    judge       reference -> equivalence verdict per rollout (judge) -> 1 / 0   (the paper's baseline)

With a cache, a retried group reuses its reference, rubric and verdicts: same rewards, no
new LLM call (see ``caching``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import NamedTuple

from .aggregators import AGGREGATORS
from .aggregators.scrl import SCRL_REWARD
from .answer_extraction import extract_answer
from .caching import (
    decode_reference,
    decode_verdict,
    encode_reference,
    encode_verdict,
    group_fingerprint,
    prompt_rubric_key,
    reference_key,
    verdict_keys,
)
from .concurrency import gather_bounded
from .context import GroupContext
from .diagnostics import diagnose, is_flat
from .errors import InvalidGroup
from .fused import fused_reference_and_rubric
from .aggregation import Uncomputable, aggregator, scoring_record
from .judge import equivalence_messages, fence, judge_all, verdict_conversations, verdict_variants
from .length_penalty import apply_length_penalty, count_rollout_tokens
from .verdict_ensemble import combine, disagreement
from .hacking import JUDGED_MODES, UNRELIABLE, Canaries, apply_hacking_policy, wants_canary
from .ports import AnswerChecker, Cache, Roles
from .prompts import PromptSet
from .reward_rules import binary_reward
from .self_proposed_rubrics import propose_discriminating_rubric, propose_rubric
from .types import (
    AGGREGATIONS,
    Criterion,
    EnsembleMember,
    Group,
    GroupOutcome,
    Reference,
    RolloutOutcome,
    SuppliedRubricOutcome,
    Verdict,
)

DEFAULT_MEMBER = EnsembleMember()

EQUIVALENCE_ID = "equivalent"


@dataclass(frozen=True)
class CacheTTLs:
    reference_s: float = 7 * 24 * 3600
    verdict_s: float = 7 * 24 * 3600
    rubric_reuse_s: float = 3600


class _Ask(NamedTuple):
    """One verdict to obtain: its prompt, and what identifies it in the cache. (A tuple: a group
    builds G x n of them.)"""

    messages: list[dict[str, str]]
    criterion_id: str
    subject: str  # the criterion text, or the reference for equivalence
    rollout: str


class CaTPipeline:
    """Scores groups. Holds no per-group state, so one instance serves every request."""

    def __init__(
        self,
        roles: Roles,
        prompts: PromptSet,
        checker: AnswerChecker,
        cache: Cache | None = None,
        ttls: CacheTTLs = CacheTTLs(),
    ) -> None:
        self.roles = roles
        self.prompts = prompts
        self.checker = checker
        self.cache = cache
        self.ttls = ttls

    def fingerprint(self, group: Group) -> str:
        return group_fingerprint(group, self.roles.anchor.model, self.roles.judge.model, self.prompts.version)

    def check(self, group: Group) -> None:
        """The rules a group's own fields must keep (``InvalidGroup`` naming the field), for a
        check before any LLM call or wait; ``score`` checks them too."""
        self._checked(group)
        self._check_scoring_options(group)

    @classmethod
    def _checked(cls, group: Group):
        if not group.rollouts:
            raise InvalidGroup("a group needs at least one rollout", param="rollouts")
        if group.mode not in ("rubric", "verifiable", "judge"):
            raise InvalidGroup(f"unknown mode {group.mode!r}", param="mode")
        aggregator = cls._aggregator(group)
        name = group.options.aggregator
        if name in ("majority", "scrl") and group.mode != "verifiable":  # as the aggregators say, before any call
            raise InvalidGroup(f"aggregator {name!r} works only with mode 'verifiable'", param="options.aggregator")
        if name == "given" and (group.reference is None or not group.reference.strip()):
            raise InvalidGroup("aggregator 'given' needs a non-empty 'reference'", param="reference")
        return aggregator

    async def score(self, group: Group) -> GroupOutcome:
        aggregator = self._checked(group)
        self._check_scoring_options(group)
        ctx = GroupContext(group=group, roles=self.roles, prompts=self.prompts, checker=self.checker)
        cache = self.cache if group.options.use_cache else None
        fingerprint = self.fingerprint(group)
        started = time.perf_counter()
        flags: list[str] = []
        length = group.options.length_penalty
        counted = None
        if length is not None:  # first: a tokenizer that cannot be loaded costs no LLM call
            counted = await self._timed(ctx, "length", count_rollout_tokens(ctx, length))

        reference, rubric = await self._timed(ctx, "reference", self._reference(ctx, aggregator, fingerprint, cache, flags))
        if reference.details.get("truncated"):
            flags.append("reference_truncated")
        supplied = None
        regenerated = False
        canaries = None
        if group.mode == "verifiable":
            rollouts = await self._timed(ctx, "scoring", self._score_verifiable(ctx, reference, flags))
        elif group.mode == "rubric":
            canary = await self._canaries(ctx, cache, fingerprint)
            rollouts = await self._timed(ctx, "scoring", self._score_rubric(ctx, rubric, cache, canary))
            canaries = await canary.completed if canary else None
            rubric_info = reference.details.get("rubric") or {}
            if (
                group.options.regenerate_flat_rubric
                and group.options.rubric_source != "supplied"
                and not rubric_info.get("regenerated")
                and is_flat(diagnose(rollouts, rubric))
            ):
                rubric, rollouts = await self._timed(
                    ctx, "regeneration", self._regenerate(ctx, reference, rubric, fingerprint, cache)
                )
                regenerated = True
            regenerated = regenerated or bool(rubric_info.get("regenerated"))
            if group.options.rubric_source == "both":
                supplied_rubric = self._supplied_rubric(group)
                supplied_rollouts = await self._timed(
                    ctx, "scoring", self._score_rubric(ctx, supplied_rubric, cache)
                )
                supplied = SuppliedRubricOutcome(
                    supplied_rubric, supplied_rollouts, diagnose(supplied_rollouts, supplied_rubric)
                )
        else:
            # The canaries are verdict prompts, not equivalence ones: their own request, beside.
            canary = await self._canaries(ctx, cache, fingerprint)
            scoring = self._score_equivalence(ctx, reference, cache)
            if canary is None:
                rollouts, canaries = await self._timed(ctx, "scoring", scoring), None
            else:
                rollouts, canaries = await self._timed(ctx, "scoring", asyncio.gather(scoring, canary.ask_alone()))

        if length is not None and counted is not None:
            apply_length_penalty(rollouts, counted[0], length, counted[1])
            if supplied is not None:
                apply_length_penalty(supplied.rollouts, counted[0], length, counted[1])
        # Rollouts are data: flag the ones that try to buy their reward, and apply the policy.
        hacking = apply_hacking_policy(ctx, rollouts, canaries, extra=[supplied.rollouts] if supplied else [])
        if supplied is not None:
            supplied.diagnostics = diagnose(supplied.rollouts, supplied.rubric)
        diagnostics = diagnose(rollouts, rubric)
        diagnostics.regenerated = regenerated
        diagnostics.canary_yes = hacking["canary_yes"]
        diagnostics.canary_judged = hacking["canary_judged"]
        diagnostics.judge_unreliable = hacking["judge_unreliable"]
        if diagnostics.judge_unreliable:
            flags.append(UNRELIABLE)
        if diagnostics.zero_variance:
            flags.append("zero_variance")
        if any(r.reward is None for r in rollouts):
            flags.append("incomplete_rewards")
        ctx.usage.total_latency_s = time.perf_counter() - started
        return GroupOutcome(
            mode=group.mode,
            reference=reference,
            rubric=rubric,
            rollouts=rollouts,
            flags=flags,
            diagnostics=diagnostics,
            supplied=supplied,
            usage=ctx.usage,
            fingerprint=fingerprint,
            anchor_model=self.roles.anchor.model,
            judge_model=self.roles.judge.model,
            prompt_version=self.prompts.version,
            scoring=self._scoring_record(group, rubric, rollouts, reference, counted, supplied),
            injection_policy=group.options.injection_policy if group.mode in JUDGED_MODES else "flag",
        )

    def _scoring_record(self, group, rubric, rollouts, reference, counted, supplied) -> dict:
        """The audit's account of how the rewards were made: aggregation, weights, length penalty,
        ensemble members and their disagreement, and the prompt templates used."""
        opts = group.options
        record: dict = {}
        if group.mode == "rubric":
            record.update(scoring_record(rubric, opts))
            if supplied is not None:
                record["supplied_criterion_weights"] = scoring_record(supplied.rubric, opts)["criterion_weights"]
        else:
            record["aggregation"] = None
        members = self._members(group) if group.mode == "rubric" else (DEFAULT_MEMBER,)
        templates: dict = {"set": self.prompts.version}
        if group.mode == "rubric":
            anchor_rubric = group.options.rubric_source != "supplied"
            regenerated = bool((reference.details.get("rubric") or {}).get("regenerated"))
            templates["rubric"] = (
                ("fused.user" if opts.fused else rubric_template_name(opts.rubric_prompt)) if anchor_rubric else None
            )
            if regenerated:
                templates["rubric_regenerated"] = "rubric_discriminating.user"
            templates["verdict"] = [f"{m.prompt}.user" for m in members]
        elif group.mode == "judge":
            templates["verdict"] = ["equivalence.user"]
        record["prompts"] = templates
        if len(members) > 1 or members[0] != DEFAULT_MEMBER:
            record["ensemble"] = {
                "members": [
                    {"name": m.name, "judge": m.judge, "model": self.roles.named_judge(m.judge).model, "prompt": m.prompt}  # type: ignore[union-attr]
                    for m in members
                ],
                "disagreement": disagreement(rubric, [r.verdicts for r in rollouts]) if group.mode == "rubric" else {},
            }
        if opts.length_penalty is not None:
            lp = opts.length_penalty
            record["length_penalty"] = {
                "max_tokens": lp.max_tokens,
                "penalty": lp.penalty,
                "tokenizer": lp.tokenizer,
                "counted_by": counted[1] if counted else None,
                "penalised": sum(1 for r in rollouts if r.length and r.length["penalty"]),
            }
        return record

    @staticmethod
    def _members(group: Group) -> tuple[EnsembleMember, ...]:
        return group.options.ensemble or (DEFAULT_MEMBER,)

    def _check_scoring_options(self, group: Group) -> None:
        """Aggregation, weighted rubrics, length penalty and ensembles: a bad combination is a 422."""
        opts = group.options
        if opts.aggregation not in AGGREGATIONS:
            raise InvalidGroup(
                f"unknown aggregation {opts.aggregation!r}; one of {', '.join(AGGREGATIONS)}", param="options.aggregation"
            )
        # Aggregation, rubric prompt and ensemble apply to rubric verdicts (and the rubric prompt to
        # the anchor's own two-step rubric); elsewhere the settings' defaults are not used. A request
        # that names one where it cannot apply is refused at the API edge (``api/mapping``).
        if opts.rubric_prompt not in ("standard", "weighted"):
            raise InvalidGroup(f"unknown rubric_prompt {opts.rubric_prompt!r}", param="options.rubric_prompt")
        w = opts.weights
        for name in ("essential", "important", "optional", "pitfall"):
            value = getattr(w, name)
            if not (value >= 0) or value != value or value == float("inf"):
                raise InvalidGroup(f"options.weights.{name} must be a finite number >= 0, not {value!r}", param=f"options.weights.{name}")
        if not 0 <= opts.essential_factor <= 1:
            raise InvalidGroup("options.essential_factor must be within [0, 1]", param="options.essential_factor")
        variants = verdict_variants(self.prompts) if opts.ensemble else ()  # read only for an ensemble
        for i, member in enumerate(opts.ensemble):
            if self.roles.named_judge(member.judge) is None:
                known = ["judge", *sorted(self.roles.judges)]
                raise InvalidGroup(
                    f"unknown judge {member.judge!r}; configured: {', '.join(known)} (CAT_EXTRA_JUDGES)",
                    param=f"options.ensemble.{i}.judge",
                )
            if member.prompt not in variants:
                raise InvalidGroup(
                    f"unknown verdict prompt {member.prompt!r}; prompt set {self.prompts.name} has {', '.join(variants)}",
                    param=f"options.ensemble.{i}.prompt",
                )
        if len(set(opts.ensemble)) != len(opts.ensemble):
            raise InvalidGroup("options.ensemble lists a member twice", param="options.ensemble")
        lp = opts.length_penalty
        if lp is not None and (lp.max_tokens < 1 or not lp.penalty >= 0):
            raise InvalidGroup("options.length_penalty needs max_tokens >= 1 and penalty >= 0", param="options.length_penalty")

    @staticmethod
    def _aggregator(group: Group):
        options = group.options
        if options.rubric_source in ("supplied", "both"):
            if group.mode != "rubric":
                raise InvalidGroup("a supplied rubric needs mode 'rubric'", param="rubric")
            if not group.rubric:
                raise InvalidGroup(f"rubric_source {options.rubric_source!r} needs a 'rubric'", param="rubric")
            if not any(c.weight > 0 for c in group.rubric):
                raise InvalidGroup("a rubric needs at least one criterion with positive points", param="rubric")
        elif group.rubric:
            raise InvalidGroup("a 'rubric' was sent but options.rubric_source is 'anchor'", param="options.rubric_source")
        if options.fused and (group.mode != "rubric" or options.aggregator != "synthesis" or options.rubric_source != "anchor"):
            raise InvalidGroup(
                "options.fused needs mode 'rubric', aggregator 'synthesis' and the anchor's own rubric",
                param="options.fused",
            )
        if options.aggregator == "none":
            if options.rubric_source != "supplied":
                raise InvalidGroup("aggregator 'none' only goes with rubric_source 'supplied'", param="options.aggregator")
            return _no_reference
        aggregator = AGGREGATORS.get(options.aggregator)
        if aggregator is None:
            raise InvalidGroup(f"unknown aggregator {options.aggregator!r}", param="options.aggregator")
        if group.token_logprobs is not None and len(group.token_logprobs) != len(group.rollouts):
            raise InvalidGroup("token_logprobs needs one list per rollout", param="token_logprobs")
        return aggregator

    async def _canaries(self, ctx: GroupContext, cache: Cache | None, fingerprint: str) -> Canaries | None:
        """The group's canary verdicts to ask (see ``hacking``), or None when off."""
        if not wants_canary(ctx):
            return None
        canary = await Canaries(ctx, cache, fingerprint, self.ttls.verdict_s).prepare()
        canary.completed = asyncio.get_running_loop().create_future()
        return canary

    @staticmethod
    async def _settle(canary: Canaries | None, verdicts: list[Verdict]) -> None:
        if canary is not None and not canary.completed.done():
            canary.completed.set_result(await canary.complete(verdicts))

    @staticmethod
    def _supplied_rubric(group: Group) -> list[Criterion]:
        return list(group.rubric or ())

    @staticmethod
    async def _timed(ctx: GroupContext, phase: str, awaitable):
        started = time.perf_counter()
        try:
            return await awaitable
        finally:
            ctx.usage.phases[phase] = ctx.usage.phases.get(phase, 0.0) + time.perf_counter() - started

    # -- reference (and rubric) ---------------------------------------------------------------
    async def _reference(
        self, ctx: GroupContext, aggregator, fingerprint: str, cache: Cache | None, flags: list[str]
    ) -> tuple[Reference, list[Criterion]]:
        group = ctx.group
        wants_rubric = group.mode == "rubric"
        reuse_key = None
        if wants_rubric and group.options.reuse_rubric:
            reuse_key = prompt_rubric_key(group, self.roles.anchor.model, self.prompts.version)
        own_key = reference_key(fingerprint)
        if cache is not None:
            keys = [own_key] + ([reuse_key] if reuse_key else [])
            for key, entry in zip(keys, await cache.get_many(keys)):
                decoded = decode_reference(entry) if entry is not None else None
                if decoded is None or (wants_rubric and not decoded[1]):
                    continue
                reference, rubric, _ = decoded
                ctx.usage.cache_hits["reference"] = 1
                if rubric:
                    ctx.usage.cache_hits["rubric"] = 1
                if key == reuse_key:
                    flags.append("rubric_reused")
                return reference, rubric

        rubric: list[Criterion] = []
        rubric_info = None
        if group.options.fused:  # validated: rubric mode, synthesis, the anchor's rubric
            reference, rubric, rubric_info = await self._timed(ctx, "fused", fused_reference_and_rubric(ctx))
            reference.details["rubric"] = rubric_info
        else:
            reference = await aggregator(ctx)
            if wants_rubric and group.options.rubric_source == "supplied":
                rubric = self._supplied_rubric(group)
            elif wants_rubric:
                if not reference.text.strip():
                    raise InvalidGroup("rubric mode needs a non-empty reference", param="reference")
                rubric, rubric_info = await self._timed(ctx, "rubric", propose_rubric(ctx, reference))
                reference.details["rubric"] = rubric_info
        if cache is not None:
            entry = encode_reference(reference, rubric, rubric_info)
            await cache.set_many({own_key: entry}, self.ttls.reference_s)
            if reuse_key:
                await cache.set_many({reuse_key: entry}, self.ttls.rubric_reuse_s)
        return reference, rubric

    async def _regenerate(
        self, ctx: GroupContext, reference: Reference, flat: list[Criterion], fingerprint: str, cache: Cache | None
    ) -> tuple[list[Criterion], list[RolloutOutcome]]:
        """Once: ask for criteria that separate the rollouts, judge again, and cache the new rubric
        (marked regenerated, so a retry does not regenerate again)."""
        rubric, info = await propose_discriminating_rubric(ctx, reference, flat)
        info["regenerated"] = True
        info["replaced"] = [c.text for c in flat]
        reference.details["rubric"] = info
        rollouts = await self._score_rubric(ctx, rubric, cache)
        if cache is not None:
            await cache.set_many(
                {reference_key(fingerprint): encode_reference(reference, rubric, info)}, self.ttls.reference_s
            )
        return rubric, rollouts

    # -- verdicts -----------------------------------------------------------------------------
    async def _verdicts(
        self,
        ctx: GroupContext,
        asks: list[_Ask],
        stage: str,
        cache: Cache | None,
        member: EnsembleMember = DEFAULT_MEMBER,
        canary: Canaries | None = None,
    ) -> list[Verdict]:
        """Every verdict, from the cache where possible; the rest asked together (one batched
        single-token score each where the judge can, else concurrent chat calls). ``member``: the
        judge and verdict prompt of one ensemble member (default: the main judge, standard prompt)."""
        opts = ctx.options
        client = self.roles.named_judge(member.judge)
        assert client is not None  # validated
        key_stage = stage if member == DEFAULT_MEMBER else f"{stage}@{member.name}"
        key = verdict_keys(client.model, self.prompts.version, key_stage, opts.judge_temperature, opts.seed)
        keys = [key(a.subject, a.rollout) for a in asks]
        found: list[Verdict | None] = [None] * len(asks)
        if cache is not None:
            for i, entry in enumerate(await cache.get_many(keys)):
                if entry is not None:
                    found[i] = decode_verdict(entry, asks[i].criterion_id)
            hits = len(found) - found.count(None)
            if hits:
                ctx.usage.cache_hits["verdict"] = hits
            missing = [i for i, v in enumerate(found) if v is None]
        else:
            missing = list(range(len(asks)))
        extra = canary.asks if canary is not None else []  # the canaries ride in the same call
        todo = [(a.messages, a.criterion_id) for a in asks] if len(missing) == len(asks) else [
            (asks[i].messages, asks[i].criterion_id) for i in missing
        ]
        asked = await judge_all(ctx, todo + extra, stage, None if client is self.roles.judge else client)
        if canary is not None:
            await self._settle(canary, asked[len(missing):])
            asked = asked[: len(missing)]
        for i, verdict in zip(missing, asked):
            found[i] = verdict
        if cache is not None:
            fresh = {keys[i]: encode_verdict(v) for i, v in zip(missing, asked) if v.met is not None}
            if fresh:
                await cache.set_many(fresh, self.ttls.verdict_s)
        return found  # type: ignore[return-value]

    async def _score_rubric(
        self, ctx: GroupContext, rubric: list[Criterion], cache: Cache | None, canary: Canaries | None = None
    ) -> list[RolloutOutcome]:
        """``canary``: asked in the main judge's verdict call (standard prompt), or alone when no
        member of an ensemble is the main judge."""
        members = self._members(ctx.group)
        carrier = next((m for m in members if m.judge == DEFAULT_MEMBER.judge), None) if canary is not None else None
        if canary is not None and carrier is None:
            canary.completed.set_result(await canary.ask_alone())
        rollouts = ctx.group.rollouts
        fenced = [fence(r) for r in rollouts]
        texts = [c.text for c in rubric]

        def asks(member: EnsembleMember) -> list[_Ask]:
            # Rollout-major order: each rollout's criteria are asked back to back, sharing a prefix.
            conversations = iter(verdict_conversations(ctx, fenced, texts, variant=member.prompt))
            return [_Ask(next(conversations), c.id, c.text, rollout) for rollout in rollouts for c in rubric]

        def carried(m: EnsembleMember) -> Canaries | None:
            return canary if m is carrier else None

        if len(members) == 1:
            verdicts = await self._verdicts(ctx, asks(members[0]), "verdict", cache, members[0], carried(members[0]))
        else:  # every member at once, each one batched request where its judge can
            answers = await asyncio.gather(
                *(self._verdicts(ctx, asks(m), "verdict", cache, m, carried(m)) for m in members)
            )
            verdicts = [combine(members, same) for same in zip(*answers)]
        n = len(rubric)
        outcomes = []
        reward = aggregator(rubric, ctx.options)  # the rubric's part found once for the G rollouts
        for index in range(len(ctx.group.rollouts)):
            mine = verdicts[index * n : (index + 1) * n]
            outcome = RolloutOutcome(index=index, reward=None, verdicts=mine)
            try:
                outcome.reward = reward(mine)
            except Uncomputable as exc:
                outcome.error = str(exc)
            outcomes.append(outcome)
        return outcomes

    async def _score_equivalence(self, ctx: GroupContext, reference: Reference, cache: Cache | None) -> list[RolloutOutcome]:
        asks = [
            _Ask(equivalence_messages(ctx, reference.text, rollout), EQUIVALENCE_ID, reference.text, rollout)
            for rollout in ctx.group.rollouts
        ]
        verdicts = await self._verdicts(ctx, asks, "equivalence", cache)
        outcomes = []
        for index, verdict in enumerate(verdicts):
            outcome = RolloutOutcome(index=index, reward=binary_reward(verdict.met), verdicts=[verdict])
            if verdict.met is None:
                outcome.error = f"verdict_failed: {verdict.error}"
            outcomes.append(outcome)
        return outcomes

    # -- verifiable ---------------------------------------------------------------------------
    async def _score_verifiable(self, ctx: GroupContext, reference: Reference, flags: list[str]) -> list[RolloutOutcome]:
        if reference.aggregator == "scrl":
            return self._score_scrl(ctx, reference, flags)
        extractors = ctx.options.answer_extractors
        if reference.answer is None and reference.aggregator != "majority":
            reference.answer, reference.details["extractor"] = extract_answer(reference.text, extractors)
            if reference.answer is None and reference.aggregator == "given" and reference.text.strip():
                # A caller's gold answer is often the bare answer ("42"), with nothing to extract.
                reference.answer, reference.details["extractor"] = reference.text.strip(), "whole_reference"
        outcomes = []
        for index, rollout in enumerate(ctx.group.rollouts):
            answer, extractor = extract_answer(rollout, extractors)
            outcomes.append(RolloutOutcome(index=index, reward=None, extracted_answer=answer, extractor=extractor))
        if reference.answer is None:
            flags.append("reference_no_answer")
            for outcome in outcomes:
                outcome.error = "reference_no_answer"
            return outcomes

        async def check(outcome: RolloutOutcome) -> None:
            if outcome.extracted_answer is None:
                outcome.reward = 0.0
                outcome.flags.append("no_answer")
                return
            result = await ctx.equivalent(reference.answer, outcome.extracted_answer)
            if result.equivalent is None:
                outcome.error = f"answer_check_failed: {result.error}"
            else:
                outcome.reward = binary_reward(result.equivalent)

        await gather_bounded([check(o) for o in outcomes], limit=len(outcomes))
        return outcomes

    @staticmethod
    def _score_scrl(ctx: GroupContext, reference: Reference, flags: list[str]) -> list[RolloutOutcome]:
        labels = reference.details["labels"]
        if reference.answer is None:
            flags.append("scrl_no_positive_label")
        if not reference.details["entropy_gate"].startswith("on"):
            flags.append("entropy_gate_off")
        outcomes = []
        for index, rollout in enumerate(ctx.group.rollouts):
            answer, extractor = extract_answer(rollout, ctx.options.answer_extractors)
            label = labels[index]
            outcomes.append(
                RolloutOutcome(
                    index=index,
                    reward=SCRL_REWARD[label],
                    extracted_answer=answer,
                    extractor=extractor,
                    flags=[label if label == "no_answer" else f"scrl_{label}"],
                )
            )
        return outcomes


def rubric_template_name(rubric_prompt: str) -> str:
    return "rubric_weighted.user" if rubric_prompt == "weighted" else "rubric.user"


async def _no_reference(ctx: GroupContext) -> Reference:
    """With only the caller's rubric to score against, no reference is estimated."""
    return Reference(text="", aggregator="none")
