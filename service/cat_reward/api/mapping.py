"""The API edge: wire models (``schemas``) to domain data and back, in one place.

    RewardRequest   -> Group, GroupJob        (``group_of``, ``job_of``)
    SamplesRequest  -> SampleJob              (``sample_job_of``)
    result document -> RewardResponse, ...    (the service's documents are the responses' data)
    CatError        -> ErrorBody, HTTP status (``error_body``, ``status_for``)

Routes call these; the service and the engine below never see a wire model.
"""

from __future__ import annotations

from dataclasses import replace

from ..admission import Overloaded
from ..assembly import SampleIn as AssemblySample
from ..engine.errors import CatError, GenerationFailed, InvalidGroup, LLMBadResponse, LLMRequestRejected, LLMUnavailable
from ..engine.types import (
    Criterion,
    EnsembleMember,
    Group,
    GroupOptions,
    ImportanceWeights,
    LengthPenalty,
    Sampling,
    ScrlThresholds,
    frozen_constructor,
)
from ..rewarding import GroupJob, SampleJob, SampleResult, Scored, group_key
from .schemas import (
    BatchItem,
    BatchResponse,
    ErrorBody,
    GroupStatus,
    RewardRequest,
    SamplesRequest,
    SamplesResponse,
    SamplingOptions,
)

DEFAULT_RETRY_AFTER_S = 5.0


# --- requests -> domain ------------------------------------------------------------------------


def _sampling(override: SamplingOptions | None, default: Sampling) -> Sampling:
    if override is None:
        return default
    return Sampling(
        temperature=override.temperature if override.temperature is not None else default.temperature,
        top_p=override.top_p if override.top_p is not None else default.top_p,
        max_tokens=override.max_tokens if override.max_tokens is not None else default.max_tokens,
    )


_group_options = frozen_constructor(GroupOptions)


def _options_with(defaults: GroupOptions, **changes) -> GroupOptions:
    """``dataclasses.replace(defaults, **changes)``: the same options, built without replace's walk
    over the fields and the frozen ``__init__``'s ~30 ``object.__setattr__`` (every request's
    options are built so)."""
    if type(defaults) is not GroupOptions or _group_options is GroupOptions:
        return replace(defaults, **changes)
    return _group_options(**{**defaults.__dict__, **changes})


def options_of(request: RewardRequest | SamplesRequest, defaults: GroupOptions, prefix: str = "") -> GroupOptions:
    """The request's options over the service's defaults (``RewardService.defaults``)."""
    o = request.options
    has_rubric = bool(getattr(request, "rubric", None))
    if request.reference is not None and o.aggregator not in (None, "given"):
        raise InvalidGroup(
            f"'reference' was sent but options.aggregator is {o.aggregator!r}; drop one, or use aggregator 'given'",
            param=f"{prefix}reference",
        )
    rubric_source = o.rubric_source or ("supplied" if has_rubric else "anchor")
    if o.aggregator is not None:
        aggregator = o.aggregator
    elif request.reference is not None:
        aggregator = "given"
    elif rubric_source == "supplied":
        aggregator = "none"
    else:
        aggregator = defaults.aggregator
    min_criteria = o.num_criteria if o.num_criteria is not None else defaults.min_criteria
    max_criteria = o.max_criteria if o.max_criteria is not None else max(defaults.max_criteria, min_criteria)
    scrl = defaults.scrl
    weights = defaults.weights
    if o.weights is not None:
        weights = replace(weights, **{k: v for k, v in o.weights.model_dump().items() if v is not None})
    length = defaults.length_penalty
    if o.length_penalty is not None:
        lp = o.length_penalty
        base = length or LengthPenalty(max_tokens=0)
        max_tokens = lp.max_tokens if lp.max_tokens is not None else base.max_tokens
        if max_tokens == 0 and lp.max_tokens is None:
            raise InvalidGroup(
                "options.length_penalty needs max_tokens (no CAT_LENGTH_PENALTY_MAX_TOKENS is configured)",
                param=f"{prefix}options.length_penalty.max_tokens",
            )
        length = (
            LengthPenalty(
                max_tokens=max_tokens,
                penalty=lp.penalty if lp.penalty is not None else base.penalty,
                tokenizer=lp.tokenizer if lp.tokenizer is not None else base.tokenizer,
            )
            if max_tokens
            else None
        )
    ensemble = defaults.ensemble
    if o.ensemble is not None:
        ensemble = tuple(EnsembleMember(judge=m.judge, prompt=m.prompt) for m in o.ensemble)
    return _options_with(
        defaults,
        aggregator=aggregator,
        include_question=o.include_question if o.include_question is not None else defaults.include_question,
        min_criteria=min_criteria,
        max_criteria=max_criteria,
        synthesis=_sampling(o.synthesis, defaults.synthesis),
        rubric=_sampling(o.rubric, defaults.rubric),
        judge_temperature=o.judge_temperature if o.judge_temperature is not None else defaults.judge_temperature,
        seed=o.seed,
        answer_extractors=tuple(o.answer_extractors) if o.answer_extractors else defaults.answer_extractors,
        use_cache=defaults.use_cache if o.cache is None else o.cache,
        reuse_rubric=defaults.reuse_rubric if o.reuse_rubric is None else o.reuse_rubric,
        rubric_source=rubric_source,
        regenerate_flat_rubric=bool(o.regenerate_flat_rubric),
        fused=bool(o.fused),
        injection_policy=o.injection_policy or defaults.injection_policy,
        injection_penalty=o.injection_penalty if o.injection_penalty is not None else defaults.injection_penalty,
        canary=defaults.canary if o.canary is None else o.canary,
        canary_threshold=o.canary_threshold if o.canary_threshold is not None else defaults.canary_threshold,
        scrl=ScrlThresholds(
            min_share=o.scrl_min_share if o.scrl_min_share is not None else scrl.min_share,
            margin=o.scrl_margin if o.scrl_margin is not None else scrl.margin,
            negative_share=o.scrl_negative_share if o.scrl_negative_share is not None else scrl.negative_share,
        ),
        rubric_prompt=o.rubric_prompt or defaults.rubric_prompt,
        aggregation=o.aggregation or defaults.aggregation,
        weights=weights,
        essential_factor=o.essential_factor if o.essential_factor is not None else defaults.essential_factor,
        length_penalty=length,
        ensemble=ensemble,
    )


def check_scoring_options(request: RewardRequest | SamplesRequest, group: Group, prefix: str = "") -> None:
    """Options a request names where they cannot apply (the settings' defaults are then just
    not used): aggregation, the weighted rubric prompt and ensembles act on rubric verdicts."""
    o = request.options
    if group.mode != "rubric":
        named = [
            name
            for name, sent in (
                ("aggregation", o.aggregation not in (None, "fraction")),
                ("rubric_prompt", o.rubric_prompt == "weighted"),
                ("ensemble", o.ensemble is not None),
            )
            if sent
        ]
        if named:
            raise InvalidGroup(f"options.{named[0]} applies to mode 'rubric' only", param=f"{prefix}options.{named[0]}")
    if o.rubric_prompt == "weighted" and (group.options.fused or group.options.rubric_source == "supplied"):
        raise InvalidGroup(
            "options.rubric_prompt 'weighted' asks the anchor for a rubric: not with fused or a supplied rubric only",
            param=f"{prefix}options.rubric_prompt",
        )


def _prompt(prompt) -> str | list[dict[str, str]]:
    return prompt if isinstance(prompt, str) else [m.model_dump() for m in prompt]


def group_of(request: RewardRequest, defaults: GroupOptions, default_mode: str, prefix: str = "") -> Group:
    rubric = None
    if request.rubric:
        rubric = tuple(
            Criterion(
                id=f"s{i + 1}", text=item.criterion, weight=item.points, source="caller", tags=tuple(item.tags),
                importance=item.importance,
            )
            for i, item in enumerate(request.rubric)
        )
    logprobs = request.token_logprobs
    group = Group(
        prompt=_prompt(request.prompt),
        rollouts=list(request.rollouts),
        mode=request.mode or default_mode,
        reference=request.reference,
        options=options_of(request, defaults, prefix),
        rubric=rubric,
        token_logprobs=tuple(tuple(lps) for lps in logprobs) if logprobs is not None else None,
    )
    check_scoring_options(request, group, prefix)
    return group


def job_of(request: RewardRequest, defaults: GroupOptions, default_mode: str, prefix: str = "") -> GroupJob:
    return GroupJob(
        group=group_of(request, defaults, default_mode, prefix),
        sent=request.model_dump(mode="json"),
        metadata=request.metadata.model_dump() if request.metadata else None,
    )


def sample_job_of(request: SamplesRequest, defaults: GroupOptions, default_mode: str) -> SampleJob:
    sent = request.model_dump(mode="json", exclude={"samples", "group"})
    rollouts = [s.rollout for s in request.samples]
    group = Group(
        prompt=_prompt(request.prompt),
        rollouts=rollouts,
        mode=request.mode or default_mode,
        reference=request.reference,
        options=options_of(request, defaults),
    )
    check_scoring_options(request, group)
    spec = request.group
    return SampleJob(
        group=group,
        sent=sent,
        samples=[AssemblySample(rollout=s.rollout, index=s.index) for s in request.samples],
        size=spec.size,
        key=group_key(group.prompt, request.mode, spec.id, spec.step),
        group_id=spec.id,
        metadata=sent.get("metadata"),
        min_size=spec.min_size,
        deadline_s=spec.deadline_s,
    )


# --- domain -> responses -----------------------------------------------------------------------


def samples_response(result: SampleResult) -> SamplesResponse:
    document = result.document
    return SamplesResponse(
        rewards=[document["rewards"][p] for p in result.positions],
        indices=result.indices,
        details=[document["details"][p] for p in result.positions],
        group=GroupStatus(key=result.key, size=result.size, scored=result.scored, partial=result.scored < result.size),
        result=document,
    )


def batch_response(results: list[Scored | CatError]) -> BatchResponse:
    return BatchResponse(
        results=[
            BatchItem(index=i, ok=False, error=error_body(r))
            if isinstance(r, CatError)
            else BatchItem(index=i, ok=True, result=r.document)
            for i, r in enumerate(results)
        ]
    )


# --- errors -> HTTP ------------------------------------------------------------------------------


def status_for(exc: CatError) -> int:
    """The one mapping from engine errors to HTTP statuses."""
    return _status_of_class(type(exc))


def _status_of_class(cls: type[CatError]) -> int:
    if issubclass(cls, (InvalidGroup, LLMRequestRejected)):
        return 422
    if issubclass(cls, (LLMUnavailable, Overloaded)):
        return 503
    if issubclass(cls, (LLMBadResponse, GenerationFailed)):
        return 502
    return 500


def _error_types() -> dict[str, int]:
    """Error type -> HTTP status, for errors that travel as data (a group scored by another replica)."""
    table = {"group_incomplete": 409, "internal_error": 500}
    pending = [CatError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        table.setdefault(cls.type, _status_of_class(cls))
    return table


ERROR_STATUS = _error_types()


def status_for_type(error_type: str) -> int:
    return ERROR_STATUS.get(error_type, 500)


def error_body(exc: CatError) -> ErrorBody:
    retry_after = None
    if isinstance(exc, (LLMUnavailable, Overloaded)):
        retry_after = exc.retry_after or DEFAULT_RETRY_AFTER_S
    return ErrorBody(type=exc.type, message=exc.message, param=exc.param, retry_after=retry_after, status=status_for(exc))
