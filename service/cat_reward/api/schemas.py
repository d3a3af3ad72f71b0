"""Wire models of the HTTP API. Request models own their conversion to engine types;
response models are built from engine outcomes. Nothing here does I/O."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..admission import Overloaded
from ..engine.errors import CatError, GenerationFailed, InvalidGroup, LLMBadResponse, LLMRequestRejected, LLMUnavailable
from ..engine.types import Criterion, Diagnostics, Group, GroupOptions, GroupOutcome, Sampling, ScrlThresholds
from ..settings import Settings

Mode = Literal["rubric", "verifiable", "judge"]
AggregatorName = Literal["synthesis", "majority", "given", "scrl", "none"]
RubricSource = Literal["anchor", "supplied", "both"]
ExtractorName = Literal["boxed", "answer_is", "last_number"]


def _check_prompt(value):
    if isinstance(value, str) and not value.strip():
        raise ValueError("prompt must not be empty")
    if isinstance(value, list) and not value:
        raise ValueError("prompt must hold at least one message")
    return value


class _Strict(BaseModel):
    # Unknown fields are errors, and JSON types are taken as they are (true is not 1, "5" is not 5).
    model_config = ConfigDict(extra="forbid", strict=True)


class ChatMessage(_Strict):
    role: str = Field(min_length=1, examples=["user"])
    content: str


class SamplingOptions(_Strict):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=16, le=32768)


class RewardOptions(_Strict):
    """Per-request overrides; anything left out comes from the service settings."""

    aggregator: AggregatorName | None = Field(
        default=None,
        description="Reference estimator: synthesis (CaT), majority (TTRL), scrl (selective pseudo-labels, verifiable "
        "mode; rewards +1/0/-1), given (the caller's `reference`), none (only with a supplied rubric). Default: 'given' "
        "when `reference` is sent, 'none' when only a supplied rubric is scored, else the service default.",
    )
    include_question: bool | None = Field(default=None, description="Show the prompt to the anchor (paper: off).")
    num_criteria: int | None = Field(default=None, ge=1, le=64, description="Fewest rubric criteria (at least 5 by default).")
    max_criteria: int | None = Field(default=None, ge=1, le=64, description="Most rubric criteria kept.")
    synthesis: SamplingOptions | None = None
    rubric: SamplingOptions | None = None
    judge_temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = Field(default=None, description="Seed passed to the LLM backends, for reproducible runs.")
    answer_extractors: list[ExtractorName] | None = Field(
        default=None, min_length=1, description="Final-answer extractors in order (verifiable mode)."
    )
    cache: bool | None = Field(default=None, description="Use the cache for this group (default: on).")
    rubric_source: RubricSource | None = Field(
        default=None,
        description="anchor: self-proposed rubric; supplied: the request's `rubric`; both: both, side by side "
        "(`rewards` from the self-proposed one, `supplied` from the caller's). Default: supplied when `rubric` is sent.",
    )
    fused: bool | None = Field(
        default=None,
        description="Synthesis and rubric in one anchor generation (default off: the paper's two steps).",
    )
    regenerate_flat_rubric: bool | None = Field(
        default=None,
        description="When no self-proposed criterion separates the rollouts (each met by all or by none), ask the "
        "anchor once more for discriminating criteria. Default off; `diagnostics.regenerated` says if it fired.",
    )
    scrl_min_share: float | None = Field(default=None, gt=0, le=1, description="SCRL: share a positive label needs (0.5).")
    scrl_margin: float | None = Field(default=None, ge=0, le=1, description="SCRL: lead over the runner-up it needs (0.15).")
    scrl_negative_share: float | None = Field(default=None, ge=0, le=1, description="SCRL: share below which an answer may be negative (0.15).")
    reuse_rubric: bool | None = Field(
        default=None, description="Reuse this prompt's rubric from an earlier step within the TTL (default: off, as in the paper)."
    )


class RequestMetadata(_Strict):
    """Who the group belongs to, for the audit history."""

    run_id: str | None = Field(default=None, max_length=200)
    step: int | None = Field(default=None, ge=0)
    group_id: str | None = Field(default=None, max_length=200)
    tags: dict[str, str | int | float | bool] = Field(default_factory=dict, description="Free tags.")


class RubricItem(_Strict):
    """One criterion of a caller-supplied rubric, in HealthBench's format."""

    criterion: str = Field(min_length=1, max_length=2000)
    points: float = Field(default=1.0, description="Negative for an undesirable behaviour ('met' = it happened).")
    tags: list[str] = Field(default_factory=list)

    @field_validator("points")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0 or value != value:
            raise ValueError("points must be a non-zero number")
        return value


class RewardRequest(_Strict):
    prompt: str | list[ChatMessage] = Field(description="The prompt: plain text or chat messages.")
    rollouts: list[str] = Field(min_length=1, description="The G rollouts of this prompt, in order.")
    mode: Mode | None = Field(default=None, description="Reward mode. Default: the service's (rubric).")
    reference: str | None = Field(default=None, description="A caller-supplied reference (aggregator 'given').")
    rubric: list[RubricItem] | None = Field(
        default=None, min_length=1, max_length=64, description="A caller-supplied rubric, scored as HealthBench does."
    )
    token_logprobs: list[list[float]] | None = Field(
        default=None,
        description="Per rollout, the logprobs of its sampled tokens: SCRL's entropy gate uses them.",
    )
    options: RewardOptions = Field(default_factory=RewardOptions)
    metadata: RequestMetadata | None = Field(default=None, description="Run, step, group and tags, kept in the history.")

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, value):
        return _check_prompt(value)

    def to_group(self, settings: Settings) -> Group:
        o = self.options
        rubric_source = o.rubric_source or ("supplied" if self.rubric else "anchor")
        if o.aggregator is not None:
            aggregator = o.aggregator
        elif self.reference is not None:
            aggregator = "given"
        elif rubric_source == "supplied":
            aggregator = "none"
        else:
            aggregator = settings.default_aggregator
        min_criteria = o.num_criteria if o.num_criteria is not None else settings.min_criteria
        max_criteria = o.max_criteria if o.max_criteria is not None else max(settings.max_criteria, min_criteria)

        def sampling(override: SamplingOptions | None, temperature: float, top_p: float, max_tokens: int) -> Sampling:
            override = override or SamplingOptions()
            return Sampling(
                temperature=override.temperature if override.temperature is not None else temperature,
                top_p=override.top_p if override.top_p is not None else top_p,
                max_tokens=override.max_tokens if override.max_tokens is not None else max_tokens,
            )

        options = GroupOptions(
            aggregator=aggregator,
            include_question=o.include_question if o.include_question is not None else settings.include_question,
            min_criteria=min_criteria,
            max_criteria=max_criteria,
            synthesis=sampling(o.synthesis, settings.synthesis_temperature, settings.synthesis_top_p, settings.synthesis_max_tokens),
            rubric=sampling(o.rubric, settings.rubric_temperature, settings.rubric_top_p, settings.rubric_max_tokens),
            judge_temperature=o.judge_temperature if o.judge_temperature is not None else settings.judge_temperature,
            seed=o.seed,
            answer_extractors=tuple(o.answer_extractors or settings.answer_extractors),
            rubric_attempts=settings.rubric_attempts,
            verdict_attempts=settings.verdict_attempts,
            verdict_concurrency=settings.verdict_concurrency,
            use_cache=settings.cache_enabled if o.cache is None else o.cache,
            reuse_rubric=settings.reuse_rubric if o.reuse_rubric is None else o.reuse_rubric,
            rubric_source=rubric_source,
            regenerate_flat_rubric=bool(o.regenerate_flat_rubric),
            fused=bool(o.fused),
            scrl=ScrlThresholds(
                min_share=o.scrl_min_share if o.scrl_min_share is not None else 0.5,
                margin=o.scrl_margin if o.scrl_margin is not None else 0.15,
                negative_share=o.scrl_negative_share if o.scrl_negative_share is not None else 0.15,
            ),
        )
        rubric = None
        if self.rubric:
            rubric = tuple(
                Criterion(id=f"s{i + 1}", text=item.criterion, weight=item.points, source="caller", tags=tuple(item.tags))
                for i, item in enumerate(self.rubric)
            )
        prompt = self.prompt if isinstance(self.prompt, str) else [m.model_dump() for m in self.prompt]
        return Group(
            prompt=prompt,
            rollouts=list(self.rollouts),
            mode=self.mode or settings.default_mode,
            reference=self.reference,
            options=options,
            rubric=rubric,
            token_logprobs=tuple(tuple(lps) for lps in self.token_logprobs) if self.token_logprobs is not None else None,
        )


class GroupSpec(_Strict):
    """Which group the samples belong to, and how big it will be."""

    id: str | None = Field(
        default=None, max_length=200, description="Explicit group key (e.g. verl's uid). Default: the prompt + step + mode."
    )
    step: int | None = Field(default=None, ge=0, description="The trainer's step; part of the default group key.")
    size: int = Field(ge=1, description="How many samples the group will have (G).")
    min_size: int | None = Field(default=None, ge=1, description="Fewest samples to score at the deadline (default CAT_GROUP_MIN_SAMPLES).")
    deadline_s: float | None = Field(default=None, gt=0, le=3600, description="Wait at most this long from the group's first sample.")


class SampleIn(_Strict):
    rollout: str
    index: int | None = Field(default=None, ge=0, description="Position in the group; default: the next free one.")


class SamplesRequest(_Strict):
    """One sample, or part of a group, of a prompt whose G rollouts arrive separately."""

    prompt: str | list[ChatMessage]
    samples: list[SampleIn] = Field(min_length=1)
    group: GroupSpec
    mode: Mode | None = None
    reference: str | None = None
    options: RewardOptions = Field(default_factory=RewardOptions)
    metadata: RequestMetadata | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, value):
        return _check_prompt(value)

    def group_request(self, rollouts: list[str]) -> RewardRequest:
        return RewardRequest(
            prompt=self.prompt,
            rollouts=rollouts,
            mode=self.mode,
            reference=self.reference,
            options=self.options,
            metadata=self.metadata,
        )


class GroupStatus(BaseModel):
    key: str
    size: int
    scored: int = Field(description="How many samples the group was scored with (fewer than size: a partial group).")
    partial: bool


class SamplesResponse(BaseModel):
    rewards: list[float | None] = Field(description="One reward per sample sent, in order.")
    indices: list[int] = Field(description="Each sample's index in the group.")
    details: list[RolloutDetail]
    group: GroupStatus
    result: RewardResponse = Field(description="The whole group's result (reference, rubric, all rewards).")


class BatchRequest(_Strict):
    groups: list[RewardRequest] = Field(min_length=1, description="Groups scored concurrently.")


# --- responses -------------------------------------------------------------------------


class CriterionOut(BaseModel):
    id: str
    text: str
    weight: float = Field(default=1.0, description="Points; negative for an undesirable behaviour.")
    source: Literal["anchor", "caller"] = Field(default="anchor", description="Who wrote it: the anchor or the caller.")
    tags: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, c: Criterion) -> CriterionOut:
        return cls(id=c.id, text=c.text, weight=c.weight, source=c.source, tags=list(c.tags))


class VerdictOut(BaseModel):
    criterion_id: str
    met: bool | None = Field(description="The judge's verdict; null when none could be obtained (see error).")
    p_yes: float | None = Field(default=None, description="P(yes) over yes/no tokens, when the backend gives logprobs.")
    raw: str | None = None
    attempts: int = 1
    error: str | None = None
    cached: bool = Field(default=False, description="Served from the verdict cache.")


class RolloutDetail(BaseModel):
    index: int
    reward: float | None
    verdicts: list[VerdictOut] = Field(default_factory=list)
    extracted_answer: str | None = None
    extractor: str | None = None
    flags: list[str] = Field(default_factory=list)
    error: str | None = Field(default=None, description="Why the reward is null, when it is.")


class CriterionSignalOut(BaseModel):
    criterion_id: str
    met: int = Field(description="Rollouts that met it.")
    judged: int = Field(description="Rollouts with a usable verdict on it.")
    discriminating: bool = Field(description="Met by some but not all: it can move rewards within the group.")


class DiagnosticsOut(BaseModel):
    reward_mean: float | None
    reward_std: float | None
    zero_variance: bool = Field(description="All computed rewards equal: no GRPO advantage from this group.")
    criteria: list[CriterionSignalOut] = Field(default_factory=list)
    discriminating_criteria: int | None = None
    regenerated: bool = Field(default=False, description="The rubric was regenerated for discriminating criteria.")

    @classmethod
    def of(cls, d: Diagnostics) -> DiagnosticsOut:
        return cls(
            reward_mean=d.reward_mean,
            reward_std=d.reward_std,
            zero_variance=d.zero_variance,
            criteria=[CriterionSignalOut(**s.__dict__) for s in d.criteria],
            discriminating_criteria=d.discriminating_criteria,
            regenerated=d.regenerated,
        )


class StageUsageOut(BaseModel):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float = Field(description="Summed over the stage's calls (they may overlap).")


class UsageOut(BaseModel):
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: dict[str, float] = Field(description="Wall time by pipeline phase (reference, rubric, scoring) and total.")
    stages: dict[str, StageUsageOut] = Field(description="LLM usage by stage (synthesis, rubric, verdict, equivalence).")
    cache_hits: dict[str, int] = Field(default_factory=dict, description="Entries served from the cache: reference, rubric, verdict.")


def _details(rollouts) -> list[RolloutDetail]:
    return [
        RolloutDetail(
            index=r.index,
            reward=r.reward,
            verdicts=[VerdictOut(**v.__dict__) for v in r.verdicts],
            extracted_answer=r.extracted_answer,
            extractor=r.extractor,
            flags=r.flags,
            error=r.error,
        )
        for r in rollouts
    ]


class SuppliedRubricResult(BaseModel):
    """The caller's rubric scored beside the self-proposed one (rubric_source "both")."""

    rewards: list[float | None]
    rubric: list[CriterionOut]
    details: list[RolloutDetail]
    diagnostics: DiagnosticsOut


class Provenance(BaseModel):
    anchor_model: str
    judge_model: str
    prompt_version: str


class RewardResponse(BaseModel):
    rewards: list[float | None] = Field(description="One reward per rollout, in order; null when it could not be computed.")
    mode: Mode
    aggregator: AggregatorName
    reference: str
    reference_answer: str | None = None
    reference_details: dict = Field(default_factory=dict)
    record_id: str = Field(description="Id of this group's audit record (GET /rubrics/{id}); stable across retries.")
    rubric_id: str | None = Field(default=None, description="In rubric mode, the record id under which the rubric is audited.")
    prompt_hash: str = Field(description="sha256 of the prompt, to filter GET /rubrics.")
    rubric: list[CriterionOut] = Field(default_factory=list)
    details: list[RolloutDetail]
    flags: list[str] = Field(
        default_factory=list,
        description="Group-level flags: reference_no_answer, incomplete_rewards, zero_variance, rubric_reused, "
        "reference_truncated, scrl_no_positive_label, entropy_gate_off, history_unavailable.",
    )
    diagnostics: DiagnosticsOut = Field(description="Learning-signal diagnostics of the rewards and criteria.")
    supplied: SuppliedRubricResult | None = Field(
        default=None, description="With rubric_source 'both': the caller's rubric, scored side by side."
    )
    provenance: Provenance
    usage: UsageOut

    @classmethod
    def from_outcome(cls, outcome: GroupOutcome, *, record_id: str, prompt_hash: str) -> RewardResponse:
        usage = outcome.usage
        latency = {phase: round(s * 1000, 3) for phase, s in usage.phases.items()}
        latency["total"] = round(usage.total_latency_s * 1000, 3)
        return cls(
            rewards=outcome.rewards,
            mode=outcome.mode,
            aggregator=outcome.reference.aggregator,
            reference=outcome.reference.text,
            reference_answer=outcome.reference.answer,
            reference_details=outcome.reference.details,
            record_id=record_id,
            rubric_id=record_id if outcome.mode == "rubric" else None,
            prompt_hash=prompt_hash,
            rubric=[CriterionOut.of(c) for c in outcome.rubric],
            details=_details(outcome.rollouts),
            flags=outcome.flags,
            diagnostics=DiagnosticsOut.of(outcome.diagnostics),
            supplied=None
            if outcome.supplied is None
            else SuppliedRubricResult(
                rewards=outcome.supplied.rewards,
                rubric=[CriterionOut.of(c) for c in outcome.supplied.rubric],
                details=_details(outcome.supplied.rollouts),
                diagnostics=DiagnosticsOut.of(outcome.supplied.diagnostics),
            ),
            provenance=Provenance(
                anchor_model=outcome.anchor_model,
                judge_model=outcome.judge_model,
                prompt_version=outcome.prompt_version,
            ),
            usage=UsageOut(
                llm_calls=usage.llm_calls,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                latency_ms=latency,
                cache_hits=dict(usage.cache_hits),
                stages={
                    name: StageUsageOut(
                        calls=s.calls,
                        prompt_tokens=s.prompt_tokens,
                        completion_tokens=s.completion_tokens,
                        latency_ms=round(s.latency_s * 1000, 3),
                    )
                    for name, s in usage.stages.items()
                },
            ),
        )


DEFAULT_RETRY_AFTER_S = 5.0


class ErrorBody(BaseModel):
    type: str = Field(examples=["invalid_request"])
    message: str
    param: str | None = Field(default=None, description="The offending request field, when there is one.")
    retry_after: float | None = None
    details: list[dict] | None = None
    status: int | None = Field(default=None, description="The HTTP status this error maps to (also inside batch results).")

    @classmethod
    def from_error(cls, exc: CatError) -> ErrorBody:
        retry_after = None
        if isinstance(exc, (LLMUnavailable, Overloaded)):
            retry_after = exc.retry_after or DEFAULT_RETRY_AFTER_S
        return cls(type=exc.type, message=exc.message, param=exc.param, retry_after=retry_after, status=status_for(exc))


def status_for(exc: CatError) -> int:
    """The one mapping from engine errors to HTTP statuses."""
    if isinstance(exc, (InvalidGroup, LLMRequestRejected)):
        return 422
    if isinstance(exc, (LLMUnavailable, Overloaded)):
        return 503
    if isinstance(exc, (LLMBadResponse, GenerationFailed)):
        return 502
    return 500


class ErrorResponse(BaseModel):
    error: ErrorBody


class BatchItem(BaseModel):
    index: int
    ok: bool
    result: RewardResponse | None = None
    error: ErrorBody | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class Readiness(BaseModel):
    ready: bool
    roles: list[dict]


class RecordOut(BaseModel):
    """One scored group, as kept in the history."""

    id: str
    created_at: str
    prompt_hash: str
    mode: Mode
    run_id: str | None = None
    step: int | None = None
    group_id: str | None = None
    anchor_model: str
    judge_model: str
    prompt_version: str
    request: dict = Field(description="prompt, rollouts, reference, options and metadata as sent")
    result: RewardResponse


class RecordSummary(BaseModel):
    id: str
    created_at: str
    prompt_hash: str
    mode: Mode
    run_id: str | None = None
    step: int | None = None
    group_id: str | None = None
    rewards: list[float | None]
    n_criteria: int
    flags: list[str]
    anchor_model: str
    judge_model: str
    prompt_version: str

    @classmethod
    def from_record(cls, record: dict) -> RecordSummary:
        result = record["result"]
        return cls(
            **{k: record.get(k) for k in ("id", "created_at", "prompt_hash", "mode", "run_id", "step", "group_id",
                                          "anchor_model", "judge_model", "prompt_version")},
            rewards=result.get("rewards", []),
            n_criteria=len(result.get("rubric", [])),
            flags=result.get("flags", []),
        )


class RecordPage(BaseModel):
    items: list[RecordSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page.")
