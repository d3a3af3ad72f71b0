"""Typed views of the service's JSON, as frozen dataclasses, and the request-side types.

Parsing is lenient about what it does not know (unknown fields are ignored, so a newer
server does not break an older client) and strict about what it needs (a missing required
field raises ``KeyError``/``TypeError``, which the core turns into ``ResponseDecodeError``).
Every top-level result keeps the decoded JSON as ``.raw``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, Union

from ._exceptions import (
    CatRewardError,
    InvalidRequestError,
    ServerError,
    UnavailableError,
    UpstreamError,
)

Mode = Literal["rubric", "verifiable", "judge"]
Aggregator = Literal["synthesis", "majority", "given"]
Extractor = Literal["boxed", "answer_is", "last_number"]


# --- request side ----------------------------------------------------------------------


class ChatMessage(TypedDict):
    role: str
    content: str


class SamplingOptions(TypedDict, total=False):
    temperature: float
    top_p: float
    max_tokens: int


class RewardOptions(TypedDict, total=False):
    """Per-request overrides of the service settings (``options`` of POST /rewards)."""

    aggregator: Aggregator
    include_question: bool
    num_criteria: int
    max_criteria: int
    synthesis: SamplingOptions
    rubric: SamplingOptions
    judge_temperature: float
    seed: int
    answer_extractors: list[Extractor]
    rubric_prompt: Literal["standard", "weighted"]
    aggregation: Literal["fraction", "weighted", "all_essential", "soft"]
    weights: dict[str, float]  # essential / important / optional / pitfall, each >= 0
    essential_factor: float
    length_penalty: dict[str, Any]  # {"max_tokens": 750, "penalty": 1.0, "tokenizer": "..."}
    ensemble: list[dict[str, str]]  # [{"judge": "judge", "prompt": "verdict_p1"}, ...]


Prompt = Union[str, Sequence[Mapping[str, str]]]


@dataclass(frozen=True)
class RewardGroup:
    """One group of a batch: the same fields as ``CatRewardClient.rewards``."""

    prompt: Prompt
    rollouts: Sequence[str]
    mode: Mode | None = None
    reference: str | None = None
    options: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    rubric: Sequence[Mapping[str, Any]] | None = None
    token_logprobs: Sequence[Sequence[float]] | None = None


@dataclass(frozen=True)
class SampleGroup:
    """Which group samples sent to POST /rewards/samples belong to (the request's ``group``).

    ``size`` is G, the number of samples the group will have. ``id`` is an explicit group key
    (e.g. verl's rollout ``uid``); without it the server keys the group by the prompt, ``step``
    and the mode. At ``deadline_s`` after its first sample a group with at least ``min_size``
    samples is scored as it is (a partial group); one with fewer fails with 409.
    """

    size: int
    id: str | None = None
    step: int | None = None
    min_size: int | None = None
    deadline_s: float | None = None


# --- response side ---------------------------------------------------------------------


def _float_or_none(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number or null, got {value!r}")
    return float(value)


def _str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r}")
    return [str(v) for v in value]


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Criterion:
    id: str
    text: str
    weight: float = 1.0
    importance: str | None = None  # weighted rubrics: essential / important / optional / pitfall

    @classmethod
    def from_json(cls, data: Any) -> Criterion:
        data = _mapping(data, "criterion")
        return cls(
            id=str(data["id"]), text=str(data["text"]), weight=float(data.get("weight", 1.0)), importance=data.get("importance")
        )


@dataclass(frozen=True)
class Verdict:
    """The judge's verdict on one criterion. ``raw`` is the judge's reply text (the server's field)."""

    criterion_id: str
    met: bool | None
    p_yes: float | None = None
    raw: str | None = None
    attempts: int = 1
    error: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> Verdict:
        data = _mapping(data, "verdict")
        met = data["met"]
        if met is not None and not isinstance(met, bool):
            raise TypeError(f"verdict.met: expected a boolean or null, got {met!r}")
        return cls(
            criterion_id=str(data["criterion_id"]),
            met=met,
            p_yes=_float_or_none(data.get("p_yes")),
            raw=data.get("raw"),
            attempts=int(data.get("attempts", 1)),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class RolloutDetail:
    index: int
    reward: float | None
    verdicts: list[Verdict] = field(default_factory=list)
    extracted_answer: str | None = None
    extractor: str | None = None
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    length: dict[str, Any] | None = None  # length control: tokens, penalty, reward before it

    @classmethod
    def from_json(cls, data: Any) -> RolloutDetail:
        data = _mapping(data, "rollout detail")
        return cls(
            index=int(data["index"]),
            reward=_float_or_none(data["reward"]),
            verdicts=[Verdict.from_json(v) for v in data.get("verdicts") or []],
            extracted_answer=data.get("extracted_answer"),
            extractor=data.get("extractor"),
            flags=_str_list(data.get("flags")),
            error=data.get("error"),
            length=data.get("length"),
        )


@dataclass(frozen=True)
class StageUsage:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float

    @classmethod
    def from_json(cls, data: Any) -> StageUsage:
        data = _mapping(data, "stage usage")
        return cls(
            calls=int(data["calls"]),
            prompt_tokens=int(data["prompt_tokens"]),
            completion_tokens=int(data["completion_tokens"]),
            latency_ms=float(data["latency_ms"]),
        )


@dataclass(frozen=True)
class Usage:
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms: dict[str, float] = field(default_factory=dict)
    stages: dict[str, StageUsage] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Usage:
        data = _mapping(data, "usage")
        latency = _mapping(data.get("latency_ms") or {}, "usage.latency_ms")
        stages = _mapping(data.get("stages") or {}, "usage.stages")
        return cls(
            llm_calls=int(data["llm_calls"]),
            prompt_tokens=int(data["prompt_tokens"]),
            completion_tokens=int(data["completion_tokens"]),
            latency_ms={str(k): float(v) for k, v in latency.items()},
            stages={str(k): StageUsage.from_json(v) for k, v in stages.items()},
        )


@dataclass(frozen=True)
class Provenance:
    anchor_model: str
    judge_model: str
    prompt_version: str

    @classmethod
    def from_json(cls, data: Any) -> Provenance:
        data = _mapping(data, "provenance")
        return cls(
            anchor_model=str(data["anchor_model"]),
            judge_model=str(data["judge_model"]),
            prompt_version=str(data["prompt_version"]),
        )


@dataclass(frozen=True)
class RewardResult:
    """The answer of POST /rewards: one reward per rollout, in order.

    A reward is ``None`` when it could not be computed (see ``details[i].error``), never a
    silent 0; decide in the trainer how to treat such rollouts.
    """

    rewards: list[float | None]
    mode: str
    aggregator: str
    reference: str
    reference_answer: str | None
    reference_details: dict[str, Any]
    rubric_id: str | None
    rubric: list[Criterion]
    details: list[RolloutDetail]
    flags: list[str]
    provenance: Provenance
    usage: Usage
    # Set by services that keep an audit history (GET /rubrics/{record_id}); None otherwise.
    record_id: str | None
    prompt_hash: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    # How the rewards were made: aggregation, weights, length penalty, ensemble, prompt templates.
    scoring: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """Whether every rollout got a reward."""
        return all(r is not None for r in self.rewards)

    @classmethod
    def from_json(cls, data: Any) -> RewardResult:
        data = _mapping(data, "reward result")
        rewards = data["rewards"]
        if not isinstance(rewards, list):
            raise TypeError("rewards: expected a list")
        return cls(
            rewards=[_float_or_none(r) for r in rewards],
            mode=str(data["mode"]),
            aggregator=str(data["aggregator"]),
            reference=str(data["reference"]),
            reference_answer=data.get("reference_answer"),
            reference_details=dict(data.get("reference_details") or {}),
            rubric_id=data.get("rubric_id"),
            rubric=[Criterion.from_json(c) for c in data.get("rubric") or []],
            details=[RolloutDetail.from_json(d) for d in data["details"]],
            flags=_str_list(data.get("flags")),
            provenance=Provenance.from_json(data["provenance"]),
            usage=Usage.from_json(data["usage"]),
            record_id=data.get("record_id"),
            prompt_hash=data.get("prompt_hash"),
            raw=dict(data),
            scoring=data.get("scoring"),
        )


@dataclass(frozen=True)
class GroupStatus:
    """How the group of a POST /rewards/samples answer was scored."""

    key: str
    size: int
    scored: int  # how many samples the group was scored with
    partial: bool  # fewer than ``size``: scored at its deadline

    @classmethod
    def from_json(cls, data: Any) -> GroupStatus:
        data = _mapping(data, "group status")
        partial = data["partial"]
        if not isinstance(partial, bool):
            raise TypeError(f"group.partial: expected a boolean, got {partial!r}")
        return cls(key=str(data["key"]), size=int(data["size"]), scored=int(data["scored"]), partial=partial)


@dataclass(frozen=True)
class SamplesResult:
    """The answer of POST /rewards/samples: the rewards of the samples this call sent, in order.

    ``indices`` are their places in the group, ``details`` their per-rollout details, ``group``
    how the group was scored, and ``result`` the whole group's ``RewardResult`` (reference,
    rubric, every rollout's reward). A reward is ``None`` when it could not be computed.
    """

    rewards: list[float | None]
    indices: list[int]
    details: list[RolloutDetail]
    group: GroupStatus
    result: RewardResult
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def complete(self) -> bool:
        """Whether every sample of this call got a reward."""
        return all(r is not None for r in self.rewards)

    @classmethod
    def from_json(cls, data: Any) -> SamplesResult:
        data = _mapping(data, "samples result")
        rewards, indices = data["rewards"], data["indices"]
        if not isinstance(rewards, list) or not isinstance(indices, list):
            raise TypeError("rewards and indices: expected lists")
        if len(rewards) != len(indices):
            raise TypeError(f"{len(rewards)} rewards for {len(indices)} indices")
        return cls(
            rewards=[_float_or_none(r) for r in rewards],
            indices=[int(i) for i in indices],
            details=[RolloutDetail.from_json(d) for d in data["details"]],
            group=GroupStatus.from_json(data["group"]),
            result=RewardResult.from_json(data["result"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class ErrorInfo:
    """The server's error envelope body, as found on a failed batch item."""

    type: str
    message: str
    param: str | None = None
    retry_after: float | None = None
    details: list[dict[str, Any]] | None = None

    @classmethod
    def from_json(cls, data: Any) -> ErrorInfo:
        data = _mapping(data, "error")
        details = data.get("details")
        return cls(
            type=str(data.get("type") or "error"),
            message=str(data.get("message") or ""),
            param=data.get("param"),
            retry_after=_float_or_none(data.get("retry_after")),
            details=list(details) if isinstance(details, list) else None,
        )


# The status POST /rewards answers for each engine error type (mirrors the server's mapping).
_STATUS_BY_TYPE = {
    "invalid_request": 422,
    "llm_request_rejected": 422,
    "llm_unavailable": 503,
    "llm_bad_response": 502,
    "generation_failed": 502,
    "synthesis_failed": 502,
    "rubric_generation_failed": 502,
}
_CLASS_BY_STATUS: dict[int, type[CatRewardError]] = {
    422: InvalidRequestError,
    503: UnavailableError,
    502: UpstreamError,
}


@dataclass(frozen=True)
class BatchItem:
    """One group's outcome in a batch: ``result`` when ``ok``, else ``error``."""

    index: int
    ok: bool
    result: RewardResult | None
    error: ErrorInfo | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    def unwrap(self) -> RewardResult:
        """The result, or raise the exception POST /rewards would have raised for this group.

        The exception's ``status`` is the one POST /rewards answers for that error type.
        """
        if self.ok and self.result is not None:
            return self.result
        error = self.error or ErrorInfo(type="error", message="batch item failed without an error body")
        status = _STATUS_BY_TYPE.get(error.type, 500)
        cls = _CLASS_BY_STATUS.get(status, ServerError)
        raise cls(
            error.message,
            status=status,
            type=error.type,
            param=error.param,
            retry_after=error.retry_after,
            details=error.details,
            raw=self.raw.get("error"),
        )

    @classmethod
    def from_json(cls, data: Any) -> BatchItem:
        data = _mapping(data, "batch item")
        ok = data["ok"]
        if not isinstance(ok, bool):
            raise TypeError(f"batch item ok: expected a boolean, got {ok!r}")
        result = data.get("result")
        error = data.get("error")
        return cls(
            index=int(data["index"]),
            ok=ok,
            result=RewardResult.from_json(result) if result is not None else None,
            error=ErrorInfo.from_json(error) if error is not None else None,
            raw=dict(data),
        )


@dataclass(frozen=True)
class BatchResult:
    """The answer of POST /rewards/batch: one item per group, ordered by group index."""

    results: list[BatchItem]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Whether every group was scored."""
        return all(item.ok for item in self.results)

    @property
    def rewards(self) -> list[list[float | None] | None]:
        """Each group's rewards, or ``None`` for a group that failed."""
        return [item.result.rewards if item.result is not None else None for item in self.results]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[BatchItem]:
        return iter(self.results)

    def __getitem__(self, index: int) -> BatchItem:
        return self.results[index]

    @classmethod
    def from_json(cls, data: Any) -> BatchResult:
        data = _mapping(data, "batch result")
        items = data["results"]
        if not isinstance(items, list):
            raise TypeError("results: expected a list")
        results = sorted((BatchItem.from_json(i) for i in items), key=lambda item: item.index)
        return cls(results=results, raw=dict(data))


@dataclass(frozen=True)
class Health:
    status: str
    version: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Health:
        data = _mapping(data, "health")
        return cls(status=str(data["status"]), version=str(data["version"]), raw=dict(data))


@dataclass(frozen=True)
class Readiness:
    """GET /readyz. ``ready`` is False (not an exception) when a backend is unreachable."""

    ready: bool
    roles: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Readiness:
        data = _mapping(data, "readiness")
        ready = data["ready"]
        if not isinstance(ready, bool):
            raise TypeError(f"ready: expected a boolean, got {ready!r}")
        roles = data.get("roles") or []
        if not isinstance(roles, list):
            raise TypeError("roles: expected a list")
        return cls(ready=ready, roles=[dict(r) for r in roles], raw=dict(data))


@dataclass(frozen=True)
class RubricPage:
    """One page of GET /rubrics. Pass ``next_cursor`` as ``cursor`` to get the next page."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> RubricPage:
        data = _mapping(data, "rubric page")
        items = data["items"]
        if not isinstance(items, list):
            raise TypeError("items: expected a list")
        cursor = data.get("next_cursor")
        return cls(
            items=[dict(_mapping(i, "rubric")) for i in items],
            next_cursor=None if cursor in (None, "") else str(cursor),
            raw=dict(data),
        )
