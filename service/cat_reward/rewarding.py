"""The application service behind the routes: an engine group -> scored outcome -> result
document, recorded in the audit history before the result leaves.

It takes and gives domain data only (``Group``, ``GroupJob``, ``Scored``, result documents);
the HTTP layer maps its wire models to these at its edge (``api/mapping.py``).

A record's id is derived from the group's fingerprint, its metadata and the caller's
Idempotency-Key, so a retried request lands on the same record (and, through the cache, on the
same rubric and rewards) instead of writing a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from .admission import Admission
from .assembly import GroupAssembler
from .assembly import SampleIn as AssemblySample
from .audit import result_document
from .engine.concurrency import gather_bounded
from .engine.errors import CatError, InvalidGroup, LLMUnavailable
from .engine.hacking import PERSUADED
from .engine.injection import FLAG_PREFIX
from .engine.pipeline import CaTPipeline
from .engine.types import (
    EnsembleMember,
    Group,
    GroupOptions,
    GroupOutcome,
    ImportanceWeights,
    LengthPenalty,
    Sampling,
    group_from_json,
    group_to_json,
)
from .metrics import (
    DISCRIMINATING_CRITERIA,
    GROUPS_SCORED,
    HISTORY_WRITE_ERRORS,
    INJECTION_FLAGS,
    INJECTION_POLICY_ACTIONS,
    JUDGE_UNRELIABLE_GROUPS,
    LabelledChildren,
    OUTBOX_DEPTH,
    REWARDS,
    RUBRIC_REGENERATIONS,
    UNCOMPUTED_REWARDS,
    VERDICT_PARSE_FAILURES,
    VERDICT_RETRIES,
    ZERO_VARIANCE_GROUPS,
)
from .settings import Settings

log = logging.getLogger(__name__)


# The per-mode child of each signal metric, looked up once per mode (made at its first use).
_SCORED, _ZERO_VARIANCE, _UNRELIABLE, _UNCOMPUTED, _REWARD = map(
    LabelledChildren, (GROUPS_SCORED, ZERO_VARIANCE_GROUPS, JUDGE_UNRELIABLE_GROUPS, UNCOMPUTED_REWARDS, REWARDS)
)


def _observe(outcome) -> None:
    """Signal metrics: the share of zero-variance groups is zero_variance / scored."""
    mode = outcome.mode
    _SCORED(mode).inc()
    diagnostics = outcome.diagnostics
    if diagnostics.zero_variance:
        _ZERO_VARIANCE(mode).inc()
    if diagnostics.discriminating_criteria is not None:
        DISCRIMINATING_CRITERIA.observe(diagnostics.discriminating_criteria)
    if diagnostics.regenerated and not outcome.usage.cache_hits.get("rubric"):
        RUBRIC_REGENERATIONS.inc()
    if diagnostics.judge_unreliable:
        _UNRELIABLE(mode).inc()
    failures = 0
    for rollout in outcome.rollouts:
        for flag in rollout.flags:
            if flag.startswith(FLAG_PREFIX):
                INJECTION_FLAGS.labels(kind=flag[len(FLAG_PREFIX):]).inc()
            elif flag == PERSUADED:
                INJECTION_FLAGS.labels(kind=PERSUADED).inc()
        if rollout.policy is not None:
            INJECTION_POLICY_ACTIONS.labels(policy=rollout.policy).inc()
        if rollout.reward is None:
            _UNCOMPUTED(mode).inc()
        else:
            _REWARD(mode).observe(rollout.reward)
        for verdict in rollout.verdicts:
            if not verdict.cached:
                if verdict.attempts > 1:
                    VERDICT_RETRIES.inc(verdict.attempts - 1)
                if verdict.met is None:
                    failures += 1
    if failures:
        VERDICT_PARSE_FAILURES.inc(failures)


def prompt_hash(prompt) -> str:
    canonical = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


_HACKING_JSON: dict = {}


def _cacheable(value) -> bool:
    # Equal keys must mean equal JSON: types are in the key (1, 1.0 and True are equal), and
    # floats whose equality hides a difference (0.0 and -0.0; NaN, equal to nothing) are left out.
    kind = type(value)
    return kind is str or kind is bool or kind is int or (kind is float and value == value and value != 0.0)


def _result_fingerprint(fingerprint: str, group: Group) -> str:
    """The group's fingerprint, and the options that change its rewards but not its reference
    (the injection policy and the canary): the same group under another policy is another record.
    Their JSON is kept per distinct values (a few combinations are ever used)."""
    o = group.options
    values = (o.injection_policy, o.injection_penalty, o.canary, o.canary_threshold)
    key = (values, tuple(map(type, values))) if all(map(_cacheable, values)) else None
    text = _HACKING_JSON.get(key) if key is not None else None
    if text is None:
        hacking = {"policy": o.injection_policy, "penalty": o.injection_penalty, "canary": o.canary,
                   "canary_threshold": o.canary_threshold}
        text = json.dumps(hacking, sort_keys=True)
        if key is not None and len(_HACKING_JSON) < 256:
            _HACKING_JSON[key] = text
    return fingerprint + ":" + text


def record_id(fingerprint: str, metadata: dict | None, idempotency_key: str | None) -> str:
    payload = json.dumps([fingerprint, metadata, idempotency_key], sort_keys=True, separators=(",", ":"))
    return "rb_" + hashlib.sha256(payload.encode()).hexdigest()[:24]


def default_options(settings: Settings) -> GroupOptions:
    """Every group option at the service's settings, before a request's overrides."""
    return GroupOptions(
        aggregator=settings.default_aggregator,
        include_question=settings.include_question,
        min_criteria=settings.min_criteria,
        max_criteria=max(settings.max_criteria, settings.min_criteria),
        synthesis=Sampling(settings.synthesis_temperature, settings.synthesis_top_p, settings.synthesis_max_tokens),
        rubric=Sampling(settings.rubric_temperature, settings.rubric_top_p, settings.rubric_max_tokens),
        judge_temperature=settings.judge_temperature,
        answer_extractors=tuple(settings.answer_extractors),
        rubric_attempts=settings.rubric_attempts,
        verdict_attempts=settings.verdict_attempts,
        verdict_concurrency=settings.verdict_concurrency,
        use_cache=settings.cache_enabled,
        reuse_rubric=settings.reuse_rubric,
        rubric_prompt=settings.rubric_prompt,
        aggregation=settings.aggregation,
        weights=ImportanceWeights(**settings.importance_weights),
        essential_factor=settings.essential_factor,
        length_penalty=LengthPenalty(
            settings.length_penalty_max_tokens, settings.length_penalty, settings.length_penalty_tokenizer
        )
        if settings.length_penalty_max_tokens
        else None,
        ensemble=tuple(EnsembleMember(*m.split("/", 1)) for m in settings.verdict_ensemble),
        injection_policy=settings.injection_policy,
        injection_penalty=settings.injection_penalty,
        canary=settings.canary,
        canary_threshold=settings.canary_threshold,
    )


def check_limits(group: Group, settings: Settings, prefix: str = "") -> None:
    """The service's size limits on one group (422 naming the field and the setting)."""
    if len(group.rollouts) > settings.max_rollouts:
        raise InvalidGroup(
            f"{len(group.rollouts)} rollouts exceed the limit of {settings.max_rollouts} per group (CAT_MAX_ROLLOUTS)",
            param=f"{prefix}rollouts",
        )
    for i, rollout in enumerate(group.rollouts):
        if len(rollout) > settings.max_rollout_chars:
            raise InvalidGroup(
                f"rollout {i} has {len(rollout)} characters, over the limit of {settings.max_rollout_chars} "
                "(CAT_MAX_ROLLOUT_CHARS)",
                param=f"{prefix}rollouts.{i}",
            )
    if group.reference is not None and len(group.reference) > settings.max_rollout_chars:
        raise InvalidGroup(
            f"the reference has {len(group.reference)} characters, over the limit of "
            f"{settings.max_rollout_chars} (CAT_MAX_ROLLOUT_CHARS)",
            param=f"{prefix}reference",
        )
    prompt = group.prompt
    prompt_chars = len(prompt) if isinstance(prompt, str) else sum(len(m.get("content", "")) for m in prompt)
    if prompt_chars > settings.max_prompt_chars:
        raise InvalidGroup(
            f"the prompt has {prompt_chars} characters, over the limit of {settings.max_prompt_chars} "
            "(CAT_MAX_PROMPT_CHARS)",
            param=f"{prefix}prompt",
        )
    if group.options.min_criteria > group.options.max_criteria:
        raise InvalidGroup("options.num_criteria exceeds options.max_criteria", param=f"{prefix}options.num_criteria")


@dataclass(frozen=True)
class GroupJob:
    """One group to score, with what its audit record keeps of the caller's request."""

    group: Group
    sent: dict | None = None  # the request as the caller sent it, JSON-ready (kept in the history)
    metadata: dict | None = None  # run_id, step, group_id, tags


@dataclass
class Scored:
    """A scored group: the engine's outcome, and its result document (the response, as recorded)."""

    outcome: GroupOutcome
    document: dict

    @property
    def record_id(self) -> str:
        return self.document["record_id"]


class RewardService:
    def __init__(self, settings: Settings, pipeline: CaTPipeline, history=None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.history = history
        self.admission = Admission(settings.active_groups, settings.max_queued_groups, settings.queue_timeout_s)
        self.defaults = default_options(settings)

    def check(self, group: Group, prefix: str = "") -> None:
        """The limits of the settings and the rules of the group's own fields (openapi.json states
        them all): ``InvalidGroup`` naming the field, before any LLM call."""
        check_limits(group, self.settings, prefix)
        try:
            self.pipeline.check(group)
        except InvalidGroup as exc:
            if not prefix:
                raise
            raise InvalidGroup(exc.message, param=f"{prefix}{exc.param}" if exc.param else None) from exc

    async def score(self, job: GroupJob, idempotency_key: str | None = None) -> Scored:
        check_limits(job.group, self.settings)
        async with self.admission.admit(1):
            return await self._score(job, idempotency_key)

    async def _score(self, job: GroupJob, idempotency_key: str | None, *, bounded_wait: bool = True) -> Scored:
        """Score one admitted group: wait for a slot, run the pipeline, flag, record."""
        group = job.group
        async with self.admission.slot(bounded_wait=bounded_wait):
            outcome = await self.pipeline.score(group)
        _observe(outcome)
        rid = record_id(_result_fingerprint(outcome.fingerprint, group), job.metadata, idempotency_key)
        document = result_document(outcome, record_id=rid, prompt_hash=prompt_hash(group.prompt))
        if not await self._record(job, document):
            outcome.flags.append("history_unavailable")
            document["flags"].append("history_unavailable")
        return Scored(outcome, document)

    async def _record(self, job: GroupJob, document: dict) -> bool:
        """Keep the group's audit record; False when even the outbox could not take it."""
        if self.history is None:
            return True
        metadata = job.metadata or {}
        provenance = document["provenance"]
        record = {
            "id": document["record_id"],
            "created_at": datetime.now(timezone.utc).isoformat(),
            "prompt_hash": document["prompt_hash"],
            "mode": document["mode"],
            "run_id": metadata.get("run_id"),
            "step": metadata.get("step"),
            "group_id": metadata.get("group_id"),
            "anchor_model": provenance["anchor_model"],
            "judge_model": provenance["judge_model"],
            "prompt_version": provenance["prompt_version"],
            "request": job.sent if job.sent is not None else group_to_json(job.group),
            "result": document,
        }
        try:
            await self.history.record(record)
        except Exception:  # noqa: BLE001 - the rewards still go out, flagged
            HISTORY_WRITE_ERRORS.inc()
            log.exception("could not record %s even in the outbox", document["record_id"])
            return False
        OUTBOX_DEPTH.set(self.history.outbox_depth())
        return True

    async def score_batch(self, jobs: list[GroupJob], idempotency_key: str | None = None) -> list[Scored | CatError]:
        """Score groups concurrently; each one's result, or the error that stopped it. An unreachable
        LLM or a full service fails the whole batch (raised), so no group is silently dropped."""
        settings = self.settings
        if len(jobs) > settings.max_groups_per_batch:
            raise InvalidGroup(
                f"{len(jobs)} groups exceed the limit of {settings.max_groups_per_batch} per batch "
                "(CAT_MAX_GROUPS_PER_BATCH)",
                param="groups",
            )
        for i, job in enumerate(jobs):
            self.check(job.group, prefix=f"groups.{i}.")  # a group breaking a rule refuses the batch whole

        async def one(index: int, job: GroupJob) -> Scored | CatError:
            key = f"{idempotency_key}#{index}" if idempotency_key else None
            try:
                return await self._score(job, key, bounded_wait=False)
            except LLMUnavailable:  # the whole batch: retry it later
                raise
            except CatError as exc:
                return exc

        async with self.admission.admit(len(jobs)):  # admitted whole or not at all
            return await gather_bounded([one(i, job) for i, job in enumerate(jobs)], limit=settings.batch_groups_at_once)


def group_key(prompt: str | list[dict], mode: str | None, group_id: str | None, step: int | None) -> str:
    """An explicit group id, or the prompt + the caller's step + the mode."""
    if group_id is not None:
        return "id:" + hashlib.sha256(group_id.encode()).hexdigest()[:32]
    payload = json.dumps([prompt, step, mode], sort_keys=True)
    return "prompt:" + hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SampleJob:
    """Samples of one group whose rollouts arrive separately."""

    group: Group  # prompt, mode, reference and options; its rollouts are these samples'
    sent: dict  # the group-level fields as the caller sent them (kept in the history)
    samples: list[AssemblySample]
    size: int
    key: str  # the group's key (``group_key``)
    group_id: str | None = None
    metadata: dict | None = None
    min_size: int | None = None
    deadline_s: float | None = None


@dataclass(frozen=True)
class SampleResult:
    document: dict  # the whole group's result document
    positions: list[int]  # where this request's samples sit in the scored rollouts
    indices: list[int]  # their indices in the group
    scored: int  # how many samples the group was scored with
    size: int
    key: str


class SampleService:
    """POST /rewards/samples: assemble groups from per-sample requests, score each group once."""

    def __init__(self, settings: Settings, rewards: RewardService, store) -> None:
        self.settings = settings
        self.rewards = rewards
        self.assembler = GroupAssembler(
            store,
            self._score,
            error_document,
            ttl_s=settings.group_ttl_s,
            lease_s=settings.group_scoring_lease_s,
        )

    async def _score(self, spec: dict, rollouts: list[str]) -> dict:
        group = replace(group_from_json(spec["group"]), rollouts=rollouts)
        job = GroupJob(group=group, sent={**spec["sent"], "rollouts": rollouts}, metadata=spec["metadata"])
        scored = await self.rewards.score(job, idempotency_key=spec["key"])
        return scored.document

    def check(self, job: SampleJob) -> None:
        """The group's size, the samples' indices, the limits and rules of the group's fields: a
        422 now, before any wait (also for a request with no samples, answered at once)."""
        size = job.size
        if size > self.settings.max_rollouts:
            raise InvalidGroup(
                f"group size {size} exceeds the limit of {self.settings.max_rollouts} (CAT_MAX_ROLLOUTS)", param="group.size"
            )
        bad = [s.index for s in job.samples if s.index is not None and s.index >= size]
        if bad:
            raise InvalidGroup(f"sample index {bad[0]} is outside a group of size {size}", param="samples")
        self.rewards.check(job.group if job.group.rollouts else replace(job.group, rollouts=[""]))  # a stand-in rollout

    async def submit(self, job: SampleJob, idempotency_key: str | None = None) -> SampleResult:
        self.check(job)
        size = job.size
        metadata = job.metadata
        if job.group_id is not None and (metadata or {}).get("group_id") is None:
            metadata = {**(metadata or {}), "group_id": job.group_id}
        spec = {"key": job.key, "group": group_to_json(replace(job.group, rollouts=[])), "sent": job.sent, "metadata": metadata}
        min_size = min(job.min_size or self.settings.group_min_samples, size)
        assembled = await self.assembler.submit(
            job.key,
            spec,
            size,
            job.samples,
            deadline_s=job.deadline_s or self.settings.group_deadline_s,
            min_size=min_size,
            idempotency_key=idempotency_key,
        )
        return SampleResult(
            document=assembled.payload,
            positions=assembled.positions,
            indices=assembled.indices,
            scored=len(assembled.scored_indices),
            size=size,
            key=job.key,
        )


def error_document(exc: BaseException) -> dict | None:
    """An engine error as data (type, message, param, retry_after), for every waiter of a group."""
    if not isinstance(exc, CatError):
        return None
    return {
        "type": exc.type,
        "message": exc.message,
        "param": exc.param,
        "retry_after": getattr(exc, "retry_after", None),
    }
