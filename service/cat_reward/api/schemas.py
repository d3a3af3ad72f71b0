"""Wire models of the HTTP API: what a request may hold and what a response holds. They know
nothing of the engine; ``mapping`` converts between them and domain data."""

from __future__ import annotations

import re
from types import UnionType
from typing import Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


Mode = Literal["rubric", "verifiable", "judge"]
AggregatorName = Literal["synthesis", "majority", "given", "scrl", "none"]
RubricSource = Literal["anchor", "supplied", "both"]
ExtractorName = Literal["boxed", "answer_is", "last_number"]
Aggregation = Literal["fraction", "weighted", "all_essential", "soft"]
Importance = Literal["essential", "important", "optional", "pitfall"]
RubricPrompt = Literal["standard", "weighted"]
InjectionPolicy = Literal["zero", "penalty", "null", "flag"]


# A text holds something besides whitespace: one character outside Python's whitespace (what
# str.strip() removes), spelled out so that every regex engine (ECMA, Python, Rust) reads it alike.
NONBLANK = "[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_NONBLANK = re.compile(NONBLANK)
INT64_MAX = 2**63 - 1
NO_NUL = "^[^\\x00]*$"  # identifiers the history indexes: PostgreSQL text cannot hold NUL


def is_blank(text: str) -> bool:
    return _NONBLANK.search(text) is None


def _check_prompt(value):
    if isinstance(value, str) and is_blank(value):
        raise ValueError("prompt must not be empty")
    if isinstance(value, list) and not value:
        raise ValueError("prompt must hold at least one message")
    return value


def _is_int_field(annotation) -> bool:
    return annotation is int or (get_origin(annotation) in (Union, UnionType) and int in get_args(annotation))
def _nonblank_text(schema: dict) -> None:
    """JSON Schema of a text that must not be blank (the string branch of a union, too); a list
    branch (chat messages) needs an item."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch.update(minLength=1, pattern=NONBLANK)
        elif branch.get("type") == "array":
            branch["minItems"] = 1


class _Strict(BaseModel):
    # Unknown fields are errors, and JSON types are taken as they are (true is not 1, "5" is not 5);
    # but JSON has one number type, so 5.0 is the integer 5 (JSON Schema's "integer" says so too).
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _whole_numbers(cls, value, info: ValidationInfo):
        if isinstance(value, float) and value.is_integer() and _is_int_field(cls.model_fields[info.field_name].annotation):
            return int(value)
        return value


class ChatMessage(_Strict):
    role: str = Field(min_length=1, examples=["user"])
    content: str


class SamplingOptions(_Strict):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=16, le=32768)


class ImportanceWeightsIn(_Strict):
    """Overrides of the importance -> weight map (CAT_IMPORTANCE_WEIGHTS); each a number >= 0.
    ``pitfall`` is a magnitude: a met pitfall subtracts it."""

    essential: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    important: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    optional: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    pitfall: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class LengthPenaltyIn(_Strict):
    """Subtract `penalty` from the reward of a rollout longer than `max_tokens` tokens (after the
    rubric score). The paper's HealthBench setting: {"max_tokens": 750, "penalty": 1}."""

    max_tokens: int | None = Field(
        default=None, ge=0, le=10_000_000, description="Longest unpenalised rollout, in tokens; 0 switches a configured penalty off."
    )
    penalty: float | None = Field(default=None, ge=0, le=1000, allow_inf_nan=False, description="Subtracted from the reward (1.0).")
    tokenizer: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="The policy's tokenizer: a Hugging Face tokenizer name or a local path (needs the `tokenizers` "
        "extra). Default: the judge's /tokenize (vLLM).",
    )


class EnsembleMemberIn(_Strict):
    """One judge of a verdict ensemble."""

    judge: str = Field(
        default="judge", min_length=1, max_length=100,
        description="A configured judge: 'judge' (the main one) or a name from CAT_EXTRA_JUDGES (another endpoint or model).",
    )
    prompt: str = Field(
        default="verdict", min_length=1, max_length=100,
        description="Verdict prompt variant of the prompt set: 'verdict', or a paraphrase ('verdict_p1', 'verdict_p2').",
    )


class RewardOptions(_Strict):
    """Per-request overrides; anything left out comes from the service settings."""

    aggregator: AggregatorName | None = Field(
        default=None,
        description="Reference estimator: synthesis (CaT), majority (TTRL), scrl (selective pseudo-labels, verifiable "
        "mode; rewards +1/0/-1), given (the caller's `reference`), none (only with a supplied rubric). Default: 'given' "
        "when `reference` is sent, 'none' when only a supplied rubric is scored, else the service default.",
    )
    include_question: bool | None = Field(default=None, description="Show the prompt to the anchor (paper: off).")
    num_criteria: int | None = Field(
        default=None, ge=1, le=64,
        description="Fewest rubric criteria (default CAT_MIN_CRITERIA, 5). Rule `criteria_order`: it must not exceed "
        "`max_criteria` (default: CAT_MAX_CRITERIA, 8, or num_criteria if larger).",
    )
    max_criteria: int | None = Field(
        default=None, ge=1, le=64,
        description="Most rubric criteria kept. Rule `criteria_order`: at least `num_criteria` (default CAT_MIN_CRITERIA, 5).",
    )
    synthesis: SamplingOptions | None = None
    rubric: SamplingOptions | None = None
    judge_temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = Field(
        default=None, ge=-(2**63), le=INT64_MAX, description="Seed passed to the LLM backends, for reproducible runs (64-bit)."
    )
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
    rubric_prompt: RubricPrompt | None = Field(
        default=None,
        description="standard: the paper's binary criteria; weighted: each criterion with an importance (essential, "
        "important, optional) and pitfalls (criteria that lower the reward when met). Default: CAT_RUBRIC_PROMPT.",
    )
    aggregation: Aggregation | None = Field(
        default=None,
        description="How verdicts become a reward (rubric mode): fraction (the paper: Σ weight met / Σ positive weight), "
        "weighted (weights from the importance map, minus met pitfalls, clipped to [0, 1]), all_essential (1 if every "
        "essential criterion is met and no pitfall, else the weighted reward x essential_factor), soft (fraction with "
        "P(yes) in place of met). Default: CAT_AGGREGATION.",
    )
    weights: ImportanceWeightsIn | None = Field(default=None, description="Overrides of the importance -> weight map.")
    essential_factor: float | None = Field(
        default=None, ge=0, le=1, description="all_essential: the factor applied when an essential criterion is missed (0.5)."
    )
    length_penalty: LengthPenaltyIn | None = Field(default=None, description="Length control (default: CAT_LENGTH_PENALTY_*; off).")
    ensemble: list[EnsembleMemberIn] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="Verdict ensemble (rubric mode): every verdict asked of each member (k endpoints, k models or k "
        "prompt paraphrases) and their P(yes) averaged. Default: CAT_VERDICT_ENSEMBLE (the judge alone).",
    )
    injection_policy: InjectionPolicy | None = Field(
        default=None,
        description="Reward of a rollout flagged as trying to buy it (possible_injection:*, judge_persuaded): zero, "
        "penalty (injection_penalty), null (no reward, with the reason), flag (the judge's reward). Default: "
        "CAT_INJECTION_POLICY (zero). Rubric and judge modes; verifiable mode only flags.",
    )
    injection_penalty: float | None = Field(
        default=None, ge=-100, le=0, description="Reward of a flagged rollout under policy 'penalty' (CAT_INJECTION_PENALTY, -1)."
    )
    canary: bool | None = Field(
        default=None,
        description="Judge each rollout on a criterion no honest answer meets (one extra verdict per rollout). "
        "Default: CAT_CANARY (on).",
    )
    canary_threshold: float | None = Field(
        default=None, gt=0, lt=1, description="Canary P(yes) above which the judge counts as persuaded (CAT_CANARY_THRESHOLD, 0.8)."
    )


class SampleOptions(RewardOptions):
    """RewardOptions of samples sent one at a time: no rubric travels with them, so the rubric is
    the anchor's and there is no 'none' aggregator."""

    aggregator: Literal["synthesis", "majority", "given", "scrl"] | None = Field(
        default=None, description="As in RewardOptions, without 'none' (that needs a supplied rubric)."
    )
    rubric_source: Literal["anchor"] | None = Field(
        default=None, description="Only 'anchor' (the default): samples carry no rubric."
    )


class RequestMetadata(_Strict):
    """Who the group belongs to, for the audit history."""

    run_id: str | None = Field(default=None, max_length=200, pattern=NO_NUL, description="No NUL character (the history's index).")
    step: int | None = Field(default=None, ge=0, le=INT64_MAX)
    group_id: str | None = Field(default=None, max_length=200, pattern=NO_NUL, description="No NUL character (the history's index).")
    tags: dict[str, str | int | float | bool] = Field(default_factory=dict, description="Free tags.")


class RubricItem(_Strict):
    """One criterion of a caller-supplied rubric, in HealthBench's format."""

    criterion: str = Field(min_length=1, max_length=2000)
    points: float = Field(
        default=1.0,
        json_schema_extra={"not": {"const": 0}},
        description="Non-zero; negative for an undesirable behaviour ('met' = it happened).",
    )
    tags: list[str] = Field(default_factory=list)
    importance: Importance | None = Field(
        default=None,
        description="essential / important / optional / pitfall: used by the weighted and all_essential aggregations "
        "(a pitfall counts against the reward whatever the sign of its points).",
    )

    @field_validator("points")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0 or value != value:
            raise ValueError("points must be a non-zero number")
        return value


class RewardRequest(_Strict):
    prompt: str | list[ChatMessage] = Field(
        json_schema_extra=_nonblank_text,
        description="The prompt: plain text (not blank) or chat messages (at least one). Rule `prompt_chars`: at most "
        "CAT_MAX_PROMPT_CHARS characters, the messages' contents summed."
    )
    rollouts: list[str] = Field(min_length=1, description="The G rollouts of this prompt, in order.")
    mode: Mode | None = Field(default=None, description="Reward mode. Default: the service's (rubric).")
    reference: str | None = Field(
        default=None,
        json_schema_extra=_nonblank_text,
        description="A caller-supplied reference (aggregator 'given'); not blank.",
    )
    rubric: list[RubricItem] | None = Field(
        default=None, min_length=1, max_length=64, description="A caller-supplied rubric, scored as HealthBench does."
    )
    token_logprobs: list[list[float]] | None = Field(
        default=None,
        description="Per rollout, the logprobs of its sampled tokens: SCRL's entropy gate uses them. Rule "
        "`logprobs_per_rollout`: one list per rollout (as many lists as `rollouts`).",
    )
    options: RewardOptions = Field(default_factory=RewardOptions)
    metadata: RequestMetadata | None = Field(default=None, description="Run, step, group and tags, kept in the history.")

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, value):
        return _check_prompt(value)


class GroupSpec(_Strict):
    """Which group the samples belong to, and how big it will be."""

    id: str | None = Field(
        default=None, max_length=200, pattern=NO_NUL,
        description="Explicit group key (e.g. verl's uid); no NUL character. Default: the prompt + step + mode."
    )
    step: int | None = Field(default=None, ge=0, le=INT64_MAX, description="The trainer's step; part of the default group key.")
    size: int = Field(ge=1, description="How many samples the group will have (G); at most CAT_MAX_ROLLOUTS.")
    min_size: int | None = Field(default=None, ge=1, description="Fewest samples to score at the deadline (default CAT_GROUP_MIN_SAMPLES).")
    deadline_s: float | None = Field(default=None, gt=0, le=3600, description="Wait at most this long from the group's first sample.")


class SampleIn(_Strict):
    rollout: str
    index: int | None = Field(
        default=None, ge=0,
        description="Position in the group; default: the next free one. Rule `index_in_group`: below `group.size`.",
    )


class SamplesRequest(_Strict):
    """One sample, or part of a group, of a prompt whose G rollouts arrive separately."""

    prompt: str | list[ChatMessage] = Field(
        json_schema_extra=_nonblank_text,
        description="The prompt: plain text (not blank) or chat messages (at least one). Rule `prompt_chars`: at most "
        "CAT_MAX_PROMPT_CHARS characters, the messages' contents summed."
    )
    samples: list[SampleIn] = Field(
        description="The samples sent now; an empty list is answered at once with empty results (no judge call)."
    )
    group: GroupSpec
    mode: Mode | None = None
    reference: str | None = Field(
        default=None,
        json_schema_extra=_nonblank_text,
        description="A caller-supplied reference (aggregator 'given'); not blank.",
    )
    options: SampleOptions = Field(default_factory=SampleOptions)
    metadata: RequestMetadata | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, value):
        return _check_prompt(value)


class GroupStatus(BaseModel):
    key: str
    size: int
    scored: int = Field(description="How many samples the group was scored with (fewer than size: a partial group).")
    partial: bool


class SamplesResponse(BaseModel):
    rewards: list[float | None] = Field(description="One reward per sample sent, in order.")
    indices: list[int] = Field(description="Each sample's index in the group.")
    details: list[RolloutDetail]
    group: GroupStatus | None = Field(description="The group's status; null for a request with no samples.")
    result: RewardResponse | None = Field(
        description="The whole group's result (reference, rubric, all rewards); null for a request with no samples."
    )


class BatchRequest(_Strict):
    groups: list[RewardRequest] = Field(
        description="Groups scored concurrently; an empty list is answered at once with empty results (no judge call)."
    )


# --- responses -------------------------------------------------------------------------


class CriterionOut(BaseModel):
    id: str
    text: str
    weight: float = Field(default=1.0, description="Points; negative for an undesirable behaviour.")
    source: Literal["anchor", "caller"] = Field(default="anchor", description="Who wrote it: the anchor or the caller.")
    tags: list[str] = Field(default_factory=list)
    importance: Importance | None = Field(default=None, description="Weighted rubrics: the criterion's importance.")


class VerdictOut(BaseModel):
    criterion_id: str
    met: bool | None = Field(description="The judge's verdict; null when none could be obtained (see error).")
    p_yes: float | None = Field(default=None, description="P(yes) over yes/no tokens, when the backend gives logprobs.")
    raw: str | None = None
    attempts: int = 1
    error: str | None = None
    cached: bool = Field(default=False, description="Served from the verdict cache.")
    members: list[MemberVerdictOut] | None = Field(default=None, description="Ensembles: each member's verdict.")
    spread: float | None = Field(default=None, description="Ensembles: max - min of the members' P(yes).")


class MemberVerdictOut(BaseModel):
    member: str = Field(description="judge/prompt")
    met: bool | None
    p_yes: float | None = None
    error: str | None = None


class LengthOut(BaseModel):
    tokens: int
    max_tokens: int
    over: bool
    penalty: float = Field(description="Subtracted from this rollout's reward (0 when within the limit).")
    reward_before_penalty: float | None
    tokenizer: str = Field(description="What counted the tokens.")


class CanaryOut(BaseModel):
    criterion: str = Field(description="The canary criterion, with its nonce: no honest answer meets it.")
    met: bool | None
    p_yes: float | None = None
    raw: str | None = None
    persuaded: bool | None = Field(
        default=None, description="P(yes) above the canary threshold (a yes verdict without logprobs): flagged judge_persuaded."
    )


class RolloutDetail(BaseModel):
    index: int
    reward: float | None
    verdicts: list[VerdictOut] = Field(default_factory=list)
    extracted_answer: str | None = None
    extractor: str | None = None
    flags: list[str] = Field(
        default_factory=list,
        description="possible_injection:<kind> (role_tags, role_forgery, evaluator_note, instruction_override, "
        "verdict_forgery, fence_escape, end_marker, padding_tail, degenerate), judge_persuaded (the canary), and "
        "mode-specific flags (no_answer, scrl_*).",
    )
    error: str | None = Field(default=None, description="Why the reward is null, when it is.")
    length: LengthOut | None = Field(default=None, description="Length control, when on.")
    raw_reward: float | None = Field(
        default=None, description="The reward before the injection policy (the verdicts, after any length penalty; equal to reward when unflagged)."
    )
    policy: str | None = Field(
        default=None, description="The injection policy applied to this rollout (flagged rollouts only): zero, penalty, null, flag."
    )
    canary: CanaryOut | None = Field(default=None, description="The judge's verdict on this rollout's canary criterion.")


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
    canary_yes: int | None = Field(default=None, description="Rollouts whose canary verdict was yes (null: no canary).")
    canary_judged: int | None = Field(default=None, description="Rollouts with a usable canary verdict.")
    judge_unreliable: bool = Field(
        default=False,
        description="The judge's canary verdict was yes for most rollouts: it cannot tell; the canary changed no reward.",
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
    cache_hits: dict[str, int] = Field(default_factory=dict, description="Entries served from the cache: reference, rubric, verdict, canary.")


class SuppliedRubricResult(BaseModel):
    """The caller's rubric scored beside the self-proposed one (rubric_source "both")."""

    rewards: list[float | None]
    rubric: list[CriterionOut]
    details: list[RolloutDetail]
    diagnostics: DiagnosticsOut


class EnsembleOut(BaseModel):
    members: list[dict] = Field(description="name, judge, model and prompt of each member.")
    disagreement: dict[str, dict] = Field(
        description="Per criterion: mean_spread (mean over rollouts of max - min P(yes)), split_rate (share of "
        "rollouts on which the members' answers split), judged."
    )


class ScoringOut(BaseModel):
    """How the rewards were made, as the audit keeps it."""

    aggregation: Aggregation | None = Field(description="null outside rubric mode.")
    criterion_weights: dict[str, float] | None = Field(default=None, description="The weight each criterion counted with.")
    supplied_criterion_weights: dict[str, float] | None = None
    weights: dict[str, float] | None = Field(default=None, description="The importance map (weighted, all_essential).")
    essential_factor: float | None = None
    prompts: dict = Field(default_factory=dict, description="Prompt set version and the templates used (rubric, verdict).")
    ensemble: EnsembleOut | None = None
    length_penalty: dict | None = Field(default=None, description="max_tokens, penalty, tokenizer, counted_by, penalised.")


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
        "reference_truncated, scrl_no_positive_label, entropy_gate_off, judge_unreliable, history_unavailable.",
    )
    injection_policy: InjectionPolicy = Field(
        default="zero",
        description="The injection policy flagged rollouts of this group got ('flag' in verifiable mode, where rewards "
        "come from the answer check).",
    )
    diagnostics: DiagnosticsOut = Field(description="Learning-signal diagnostics of the rewards and criteria.")
    supplied: SuppliedRubricResult | None = Field(
        default=None, description="With rubric_source 'both': the caller's rubric, scored side by side."
    )
    scoring: ScoringOut | None = Field(default=None, description="How the rewards were made (aggregation, weights, ...).")
    provenance: Provenance
    usage: UsageOut


class ErrorBody(BaseModel):
    type: str = Field(examples=["invalid_request"])
    message: str
    param: str | None = Field(default=None, description="The offending request field, when there is one.")
    retry_after: float | None = None
    details: list[dict] | None = None
    status: int | None = Field(default=None, description="The HTTP status this error maps to (also inside batch results).")


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
