"""Plain data the CaT pipeline takes and gives. No I/O, no framework types."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from types import UnionType
from typing import Literal, Union, get_args, get_origin, get_type_hints


def frozen_constructor(cls):
    """A constructor for the frozen dataclass ``cls`` with ``__init__``'s signature and result (the
    same fields in ``__dict__``, in the same order) that fills ``__dict__`` at once instead of one
    ``object.__setattr__`` per field: about 1 us instead of 3 on the judge host, and the verdict
    path builds G x n scores and verdicts per group. ``cls`` itself when its ``__init__`` does
    more (``__post_init__``, default factories, fields outside ``__init__``, keyword-only or
    slotted fields, or an ``__init__`` of its own)."""
    if not (isinstance(cls, type) and is_dataclass(cls)) or not cls.__dataclass_params__.init:
        return cls
    fs = fields(cls)
    if (
        hasattr(cls, "__post_init__")
        or "__slots__" in vars(cls)
        or any(f.default_factory is not MISSING or not f.init or f.kw_only for f in fs)
    ):
        return cls
    namespace = {"_cls": cls, "_new": object.__new__, "_set": object.__setattr__}
    params = []
    for f in fs:
        if f.default is MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    body = ", ".join(f"{f.name!r}: {f.name}" for f in fs)
    source = f"def make({', '.join(params)}):\n    obj = _new(_cls)\n    _set(obj, '__dict__', {{{body}}})\n    return obj\n"
    exec(source, namespace)  # noqa: S102 - generated from the class's own field names, as dataclasses does
    make = namespace["make"]
    make.__doc__ = f"{cls.__name__}(...), built without its per-field __setattr__."
    return make


Mode = Literal["rubric", "verifiable", "judge"]
AggregatorName = Literal["synthesis", "majority", "given", "scrl", "none"]
RubricSource = Literal["anchor", "supplied", "both"]
Aggregation = Literal["fraction", "weighted", "all_essential", "soft"]
Importance = Literal["essential", "important", "optional", "pitfall"]
RubricPrompt = Literal["standard", "weighted"]
AGGREGATIONS: tuple[str, ...] = ("fraction", "weighted", "all_essential", "soft")
IMPORTANCES: tuple[str, ...] = ("essential", "important", "optional", "pitfall")
InjectionPolicy = Literal["zero", "penalty", "null", "flag"]


@dataclass(frozen=True)
class ScrlThresholds:
    """SCRL's label rules (arXiv 2603.19880): a positive label needs share >= min_share and a lead
    over the runner-up > margin; a negative label needs share < negative_share and, when entropies
    are known, mean token entropy >= the group's mean."""

    min_share: float = 0.5
    margin: float = 0.15
    negative_share: float = 0.15


@dataclass(frozen=True)
class ImportanceWeights:
    """The one map from a criterion's importance to its weight (``weighted`` and ``all_essential``
    aggregation). ``pitfall`` is a magnitude: a met pitfall subtracts it."""

    essential: float = 1.0
    important: float = 0.6
    optional: float = 0.3
    pitfall: float = 0.6

    def weight(self, importance: str) -> float:
        value = getattr(self, importance)
        return -value if importance == "pitfall" else value


@dataclass(frozen=True)
class LengthPenalty:
    """Subtract ``penalty`` from a rollout's reward when it is longer than ``max_tokens`` tokens,
    counted with ``tokenizer`` (a Hugging Face tokenizer name or path) or, when None, the judge's
    ``/tokenize``. The paper's HealthBench runs: max_tokens 750, penalty 1."""

    max_tokens: int
    penalty: float = 1.0
    tokenizer: str | None = None


@dataclass(frozen=True)
class EnsembleMember:
    """One judge of a verdict ensemble: a configured judge (``judge`` is the main one) asked with
    one verdict prompt variant of the prompt set (``verdict``, ``verdict_p1``, ...)."""

    judge: str = "judge"
    prompt: str = "verdict"

    @property
    def name(self) -> str:
        return f"{self.judge}/{self.prompt}"


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float | None
    max_tokens: int


@dataclass(frozen=True)
class GroupOptions:
    """Every knob of one group's scoring, fully resolved (settings merged with the request)."""

    aggregator: AggregatorName = "synthesis"
    include_question: bool = False
    min_criteria: int = 5
    max_criteria: int = 8
    synthesis: Sampling = Sampling(temperature=0.7, top_p=0.95, max_tokens=768)
    rubric: Sampling = Sampling(temperature=0.7, top_p=0.95, max_tokens=384)
    judge_temperature: float = 0.0
    seed: int | None = None
    answer_extractors: tuple[str, ...] = ("boxed", "answer_is")
    rubric_attempts: int = 3
    verdict_attempts: int = 3
    verdict_concurrency: int = 64
    use_cache: bool = True
    reuse_rubric: bool = False  # reuse a prompt's rubric across steps (saves cost; the paper does not)
    rubric_source: RubricSource = "anchor"  # anchor: self-proposed; supplied: the caller's; both: side by side
    regenerate_flat_rubric: bool = False  # ask once more for discriminating criteria when none discriminates
    fused: bool = False  # reference and rubric in one anchor generation (rubric mode, synthesis aggregator)
    scrl: ScrlThresholds = ScrlThresholds()
    rubric_prompt: RubricPrompt = "standard"  # weighted: criteria with importance and pitfalls
    aggregation: Aggregation = "fraction"  # the paper's rule
    weights: ImportanceWeights = ImportanceWeights()
    essential_factor: float = 0.5  # all_essential: the weighted fraction times this when an essential is missed
    length_penalty: LengthPenalty | None = None  # None: off
    ensemble: tuple[EnsembleMember, ...] = ()  # empty: the judge alone, with the standard verdict prompt
    injection_policy: InjectionPolicy = "zero"  # what a flagged rollout is paid (see ``hacking``)
    injection_penalty: float = -1.0  # the reward under policy "penalty"
    canary: bool = True  # one extra verdict per rollout on a criterion no honest answer meets
    canary_threshold: float = 0.8  # canary P(yes) above this: the judge was persuaded


@dataclass(frozen=True)
class Criterion:
    id: str
    text: str
    weight: float = 1.0  # HealthBench points; negative for an undesirable behaviour
    source: Literal["anchor", "caller"] = "anchor"
    tags: tuple[str, ...] = ()
    importance: Importance | None = None  # weighted rubrics: essential / important / optional / pitfall

    @property
    def pitfall(self) -> bool:
        return self.importance == "pitfall" or self.weight < 0


@dataclass(frozen=True)
class Group:
    """One prompt and its G rollouts."""

    prompt: str | list[dict[str, str]]
    rollouts: list[str]
    mode: Mode
    reference: str | None = None
    options: GroupOptions = GroupOptions()
    rubric: tuple[Criterion, ...] | None = None  # a caller-supplied rubric (HealthBench style)
    token_logprobs: tuple[tuple[float, ...], ...] | None = None  # per rollout, for SCRL's entropy gate


@dataclass(frozen=True)
class Verdict:
    """The judge's answer for one (rollout, criterion) pair, or for one rollout's equivalence."""

    criterion_id: str
    met: bool | None  # None: no usable verdict (see error)
    p_yes: float | None = None  # P(yes) normalised over yes/no tokens, when logprobs were given
    raw: str | None = None
    attempts: int = 1
    error: str | None = None
    cached: bool = False
    # Ensembles: each member's verdict, and the spread of their P(yes) (max - min).
    members: tuple[MemberVerdict, ...] = ()
    spread: float | None = None


@dataclass(frozen=True)
class MemberVerdict:
    member: str  # EnsembleMember.name
    met: bool | None
    p_yes: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class CanaryResult:
    """The judge's verdict on a rollout's canary criterion (one no honest answer meets)."""

    criterion: str
    met: bool | None
    p_yes: float | None
    raw: str | None
    persuaded: bool | None  # P(yes) above the canary threshold (or "yes" without logprobs); None: no verdict


@dataclass
class RolloutOutcome:
    index: int
    reward: float | None
    verdicts: list[Verdict] = field(default_factory=list)
    extracted_answer: str | None = None
    extractor: str | None = None
    flags: list[str] = field(default_factory=list)
    error: str | None = None
    length: dict | None = None  # length penalty: tokens, max_tokens, penalty applied, reward before it
    raw_reward: float | None = None  # what the verdicts gave, before the injection policy
    policy: str | None = None  # the injection policy applied (flagged rollouts only)
    canary: CanaryResult | None = None


@dataclass
class Reference:
    """The pseudo-reference an aggregator produced for a group."""

    text: str
    aggregator: AggregatorName
    answer: str | None = None  # extracted final answer (verifiable mode)
    details: dict = field(default_factory=dict)


@dataclass
class StageUsage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


@dataclass
class Usage:
    stages: dict[str, StageUsage] = field(default_factory=dict)  # per LLM stage: summed over calls
    phases: dict[str, float] = field(default_factory=dict)  # wall time of each pipeline phase, seconds
    cache_hits: dict[str, int] = field(default_factory=dict)  # reference, rubric, verdict
    total_latency_s: float = 0.0

    @property
    def llm_calls(self) -> int:
        return sum(s.calls for s in self.stages.values())

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.stages.values())

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.stages.values())

    def stage(self, name: str) -> StageUsage:
        return self.stages.setdefault(name, StageUsage())


@dataclass
class CriterionSignal:
    criterion_id: str
    met: int  # rollouts whose verdict was yes
    judged: int  # rollouts with a usable verdict
    discriminating: bool  # met by some but not all


@dataclass
class Diagnostics:
    """Is there a learning signal? GRPO learns nothing from a group whose rewards are all equal."""

    reward_mean: float | None
    reward_std: float | None
    zero_variance: bool
    criteria: list[CriterionSignal] = field(default_factory=list)
    discriminating_criteria: int | None = None
    regenerated: bool = False
    canary_yes: int | None = None  # rollouts whose canary verdict was yes (None: no canary)
    canary_judged: int | None = None  # rollouts with a usable canary verdict
    judge_unreliable: bool = False  # the canary said yes for most of the group


@dataclass
class SuppliedRubricOutcome:
    """The caller's rubric scored beside the self-proposed one (rubric_source "both")."""

    rubric: list[Criterion]
    rollouts: list[RolloutOutcome]
    diagnostics: Diagnostics

    @property
    def rewards(self) -> list[float | None]:
        return [r.reward for r in self.rollouts]


@dataclass
class GroupOutcome:
    mode: Mode
    reference: Reference
    rubric: list[Criterion]
    rollouts: list[RolloutOutcome]
    flags: list[str]
    diagnostics: Diagnostics
    usage: Usage
    fingerprint: str
    anchor_model: str
    judge_model: str
    prompt_version: str
    supplied: SuppliedRubricOutcome | None = None
    scoring: dict = field(default_factory=dict)  # how the rewards were made: aggregation, weights, ...
    injection_policy: str = "zero"  # the policy flagged rollouts got ("flag" in verifiable mode)

    @property
    def rewards(self) -> list[float | None]:
        return [r.reward for r in self.rollouts]


# --- JSON form of a group (to hand a group to another process, e.g. across replicas) ---------


def group_to_json(group: Group) -> dict:
    """A group as JSON-ready data; ``group_from_json`` gives it back."""
    return asdict(group)


def group_from_json(data: dict) -> Group:
    return _build(Group, data)


def _build(cls, data: dict):
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if f.name in data:
            values[f.name] = _value(hints[f.name], data[f.name])
    return cls(**values)


def _value(hint, value):
    if value is None:
        return None
    union = get_origin(hint) in (Union, UnionType)
    for candidate in get_args(hint) if union else (hint,):  # X | None: try the members
        if is_dataclass(candidate) and isinstance(value, dict):
            return _build(candidate, value)
        if get_origin(candidate) is tuple and isinstance(value, (list, tuple)):  # JSON, or asdict kept in memory
            args = get_args(candidate)
            item = args[0] if args else None
            return tuple(_value(item, v) if item is not None else v for v in value)
    return value
