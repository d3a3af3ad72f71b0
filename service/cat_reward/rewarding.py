"""The application service behind the routes: request -> engine group -> scored outcome ->
response, recorded in the audit history before the response leaves.

A record's id is derived from the group's fingerprint, its metadata and the caller's
Idempotency-Key, so a retried request lands on the same record (and, through the cache, on the
same rubric and rewards) instead of writing a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone

from .admission import Admission
from .api.schemas import (
    BatchItem,
    BatchRequest,
    BatchResponse,
    ErrorBody,
    GroupStatus,
    RewardRequest,
    RewardResponse,
    SamplesRequest,
    SamplesResponse,
)
from .assembly import GroupAssembler
from .assembly import SampleIn as AssemblySample
from .engine.concurrency import gather_bounded
from .engine.errors import CatError, InvalidGroup, LLMUnavailable
from .engine.injection import injection_flags
from .engine.pipeline import CaTPipeline
from .engine.types import Group
from .metrics import (
    DISCRIMINATING_CRITERIA,
    GROUPS_SCORED,
    HISTORY_WRITE_ERRORS,
    INJECTION_FLAGS,
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


def _observe(outcome) -> None:
    """Signal metrics: the share of zero-variance groups is zero_variance / scored."""
    GROUPS_SCORED.labels(mode=outcome.mode).inc()
    diagnostics = outcome.diagnostics
    if diagnostics.zero_variance:
        ZERO_VARIANCE_GROUPS.labels(mode=outcome.mode).inc()
    if diagnostics.discriminating_criteria is not None:
        DISCRIMINATING_CRITERIA.observe(diagnostics.discriminating_criteria)
    if diagnostics.regenerated and not outcome.usage.cache_hits.get("rubric"):
        RUBRIC_REGENERATIONS.inc()
    for rollout in outcome.rollouts:
        if rollout.reward is None:
            UNCOMPUTED_REWARDS.labels(mode=outcome.mode).inc()
        else:
            REWARDS.labels(mode=outcome.mode).observe(rollout.reward)
        for verdict in rollout.verdicts:
            if not verdict.cached:
                if verdict.attempts > 1:
                    VERDICT_RETRIES.inc(verdict.attempts - 1)
                if verdict.met is None:
                    VERDICT_PARSE_FAILURES.inc()


def prompt_hash(prompt) -> str:
    canonical = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_id(fingerprint: str, metadata: dict | None, idempotency_key: str | None) -> str:
    payload = json.dumps([fingerprint, metadata, idempotency_key], sort_keys=True, separators=(",", ":"))
    return "rb_" + hashlib.sha256(payload.encode()).hexdigest()[:24]


class RewardService:
    def __init__(self, settings: Settings, pipeline: CaTPipeline, history=None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.history = history
        self.admission = Admission(settings.max_active_groups, settings.max_queued_groups, settings.queue_timeout_s)

    def to_group(self, request: RewardRequest, prefix: str = "") -> Group:
        settings = self.settings
        if len(request.rollouts) > settings.max_rollouts:
            raise InvalidGroup(
                f"{len(request.rollouts)} rollouts exceed the limit of {settings.max_rollouts} per group (CAT_MAX_ROLLOUTS)",
                param=f"{prefix}rollouts",
            )
        for i, rollout in enumerate(request.rollouts):
            if len(rollout) > settings.max_rollout_chars:
                raise InvalidGroup(
                    f"rollout {i} has {len(rollout)} characters, over the limit of {settings.max_rollout_chars} "
                    "(CAT_MAX_ROLLOUT_CHARS)",
                    param=f"{prefix}rollouts.{i}",
                )
        if request.reference is not None and len(request.reference) > settings.max_rollout_chars:
            raise InvalidGroup(
                f"the reference has {len(request.reference)} characters, over the limit of "
                f"{settings.max_rollout_chars} (CAT_MAX_ROLLOUT_CHARS)",
                param=f"{prefix}reference",
            )
        prompt_chars = (
            len(request.prompt) if isinstance(request.prompt, str) else sum(len(m.content) for m in request.prompt)
        )
        if prompt_chars > settings.max_prompt_chars:
            raise InvalidGroup(
                f"the prompt has {prompt_chars} characters, over the limit of {settings.max_prompt_chars} "
                "(CAT_MAX_PROMPT_CHARS)",
                param=f"{prefix}prompt",
            )
        if request.reference is not None and request.options.aggregator not in (None, "given"):
            raise InvalidGroup(
                f"'reference' was sent but options.aggregator is {request.options.aggregator!r}; "
                "drop one, or use aggregator 'given'",
                param=f"{prefix}reference",
            )
        group = request.to_group(settings)
        if group.options.min_criteria > group.options.max_criteria:
            raise InvalidGroup("options.num_criteria exceeds options.max_criteria", param=f"{prefix}options.num_criteria")
        return group

    async def score(self, request: RewardRequest, idempotency_key: str | None = None, *, group: Group | None = None) -> RewardResponse:
        group = group or self.to_group(request)
        async with self.admission.admit(1):
            return await self._score(request, group, idempotency_key)

    async def _score(
        self, request: RewardRequest, group: Group, idempotency_key: str | None, *, bounded_wait: bool = True
    ) -> RewardResponse:
        """Score one admitted group: wait for a slot, run the pipeline, flag, record."""
        async with self.admission.slot(bounded_wait=bounded_wait):
            outcome = await self.pipeline.score(group)
        for rollout in outcome.rollouts:  # rollouts are data; flag the ones that talk to the judge
            flags = injection_flags(group.rollouts[rollout.index])
            rollout.flags.extend(flags)
            for flag in flags:
                INJECTION_FLAGS.labels(kind=flag.split(":", 1)[1]).inc()
        _observe(outcome)
        metadata = request.metadata.model_dump() if request.metadata else None
        rid = record_id(outcome.fingerprint, metadata, idempotency_key)
        response = RewardResponse.from_outcome(outcome, record_id=rid, prompt_hash=prompt_hash(group.prompt))
        await self._record(request, response, metadata)
        return response

    async def _record(self, request: RewardRequest, response: RewardResponse, metadata: dict | None) -> None:
        if self.history is None:
            return
        record = {
            "id": response.record_id,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "prompt_hash": response.prompt_hash,
            "mode": response.mode,
            "run_id": (metadata or {}).get("run_id"),
            "step": (metadata or {}).get("step"),
            "group_id": (metadata or {}).get("group_id"),
            "anchor_model": response.provenance.anchor_model,
            "judge_model": response.provenance.judge_model,
            "prompt_version": response.provenance.prompt_version,
            "request": request.model_dump(mode="json"),
            "result": response.model_dump(mode="json"),
        }
        try:
            await self.history.record(record)
        except Exception:  # noqa: BLE001 - the rewards still go out, flagged
            HISTORY_WRITE_ERRORS.inc()
            log.exception("could not record %s even in the outbox", response.record_id)
            response.flags.append("history_unavailable")
        else:
            OUTBOX_DEPTH.set(self.history.outbox_depth())

    async def score_batch(self, batch: BatchRequest, idempotency_key: str | None = None) -> BatchResponse:
        settings = self.settings
        if len(batch.groups) > settings.max_groups_per_batch:
            raise InvalidGroup(
                f"{len(batch.groups)} groups exceed the limit of {settings.max_groups_per_batch} per batch "
                "(CAT_MAX_GROUPS_PER_BATCH)",
                param="groups",
            )
        groups = [self.to_group(g, prefix=f"groups.{i}.") for i, g in enumerate(batch.groups)]

        async def one(index: int, request: RewardRequest, group: Group) -> BatchItem:
            key = f"{idempotency_key}#{index}" if idempotency_key else None
            try:
                result = await self._score(request, group, key, bounded_wait=False)
            except LLMUnavailable:  # the whole batch: retry it later
                raise
            except CatError as exc:
                return BatchItem(index=index, ok=False, error=ErrorBody.from_error(exc))
            return BatchItem(index=index, ok=True, result=result)

        async with self.admission.admit(len(groups)):  # admitted whole or not at all
            items = await gather_bounded(
                [one(i, r, g) for i, (r, g) in enumerate(zip(batch.groups, groups))], limit=settings.batch_concurrency
            )
        return BatchResponse(results=items)


def group_key(request: SamplesRequest) -> str:
    """An explicit group id, or the prompt + the caller's step + the mode."""
    if request.group.id is not None:
        return "id:" + hashlib.sha256(request.group.id.encode()).hexdigest()[:32]
    payload = json.dumps([request.prompt if isinstance(request.prompt, str) else [m.model_dump() for m in request.prompt],
                          request.group.step, request.mode], sort_keys=True)
    return "prompt:" + hashlib.sha256(payload.encode()).hexdigest()[:32]


class SampleService:
    """POST /rewards/samples: assemble groups from per-sample requests, score each group once."""

    def __init__(self, settings: Settings, rewards: RewardService, store) -> None:
        self.settings = settings
        self.rewards = rewards
        self.assembler = GroupAssembler(
            store,
            self._score,
            _error_of,
            ttl_s=settings.group_ttl_s,
            lease_s=settings.group_scoring_lease_s,
        )

    async def _score(self, spec: dict, rollouts: list[str]) -> dict:
        request = RewardRequest.model_validate({**spec["request"], "rollouts": rollouts})
        response = await self.rewards.score(request, idempotency_key=spec["key"])
        return response.model_dump(mode="json")

    async def submit(self, request: SamplesRequest, idempotency_key: str | None = None) -> SamplesResponse:
        size = request.group.size
        if size > self.settings.max_rollouts:
            raise InvalidGroup(
                f"group size {size} exceeds the limit of {self.settings.max_rollouts} (CAT_MAX_ROLLOUTS)", param="group.size"
            )
        bad = [s.index for s in request.samples if s.index is not None and s.index >= size]
        if bad:
            raise InvalidGroup(f"sample index {bad[0]} is outside a group of size {size}", param="samples")
        # Validate the group-level fields now, with a stand-in rollout, so bad options fail fast.
        self.rewards.to_group(request.group_request([s.rollout for s in request.samples]))
        key = group_key(request)
        group_request = request.model_dump(mode="json", exclude={"samples", "group"})
        if request.group.id is not None:
            metadata = group_request.get("metadata") or {}
            if metadata.get("group_id") is None:
                group_request["metadata"] = {**metadata, "group_id": request.group.id}
        spec = {"key": key, "request": group_request}
        min_size = min(request.group.min_size or self.settings.group_min_samples, size)
        assembled = await self.assembler.submit(
            key,
            spec,
            size,
            [AssemblySample(rollout=s.rollout, index=s.index) for s in request.samples],
            deadline_s=request.group.deadline_s or self.settings.group_deadline_s,
            min_size=min_size,
            idempotency_key=idempotency_key,
        )
        result = RewardResponse.model_validate(assembled.payload)
        return SamplesResponse(
            rewards=[result.rewards[p] for p in assembled.positions],
            indices=assembled.indices,
            details=[result.details[p] for p in assembled.positions],
            group=GroupStatus(
                key=key, size=size, scored=len(assembled.scored_indices), partial=len(assembled.scored_indices) < size
            ),
            result=result,
        )


def _error_of(exc: BaseException):
    if isinstance(exc, CatError):
        body = ErrorBody.from_error(exc)
        return body.status or 500, body.model_dump(exclude_none=True)
    return None
