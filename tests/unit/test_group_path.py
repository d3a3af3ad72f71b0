"""The rest of a group's path (keys, reference cache entries, aggregation, diagnostics, metrics,
documents) made cheaper: each fast path against the old code, written out here, on awkward
inputs. Same strings where they feed a digest or a stored document, same objects' values
elsewhere."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import pytest

from cat_reward.engine import caching
from cat_reward.engine.types import (
    Criterion,
    EnsembleMember,
    Group,
    GroupOptions,
    ImportanceWeights,
    LengthPenalty,
    Reference,
    Sampling,
)

# --- the group's fingerprint -------------------------------------------------------------------


def old_digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def old_criterion(c: Criterion) -> dict:
    data = asdict(c)
    if data.get("importance") is None:
        data.pop("importance", None)
    return data


def old_fingerprint(group: Group, anchor_model: str, judge_model: str, prompt_version: str) -> str:
    """``group_fingerprint`` as it was: one JSON encoding of the whole payload, options by asdict."""
    full = asdict(group.options)
    later = {n: full[n] for n in caching._LATER_RESULT_OPTIONS if full[n] != asdict(GroupOptions())[n]}
    return old_digest(
        {
            **({"fused": True} if group.options.fused else {}),
            **later,
            **({"injection_policy": "flag"} if group.options.injection_policy == "flag" else {}),
            "prompt": group.prompt,
            "rollouts": group.rollouts,
            "mode": group.mode,
            "reference": group.reference,
            "rubric": [old_criterion(c) for c in group.rubric] if group.rubric else None,
            "token_logprobs": group.token_logprobs,
            "options": {name: full[name] for name in caching._RESULT_OPTIONS},
            "anchor_model": anchor_model,
            "judge_model": judge_model,
            "prompt_version": prompt_version,
        }
    )


ROLLOUT_SETS = [
    ["plain ascii text", "another one"],
    ["a single rollout"],
    [""],
    ["", "", "x"],
    ['a "quoted" word', "plain"],
    ["back\\slash", "plain"],
    ["new\nline", "tab\there", "cr\r", "nul\x00", "esc\x1b", "del\x7f"],
    ["caf\u00e9", "\u4e2d\u6587", "emoji \U0001f600", "plain"],
    ["lone surrogate \ud800", "plain"],
    ["</script> & <b>", "{}[]:,", "  spaces  "],
    ("a tuple", "of rollouts"),
    ["mixed", 3, None],
    [],
]

OPTIONS = [
    GroupOptions(),
    GroupOptions(seed=7, judge_temperature=0.3, answer_extractors=("boxed",), reuse_rubric=True),
    GroupOptions(
        synthesis=Sampling(temperature=0.2, top_p=None, max_tokens=99),
        rubric_prompt="weighted",
        aggregation="weighted",
        weights=ImportanceWeights(essential=5.0),
        essential_factor=0.25,
        length_penalty=LengthPenalty(max_tokens=100, penalty=0.1, tokenizer="t\u00e9"),
        ensemble=(EnsembleMember(), EnsembleMember(prompt="verdict_p1")),
        injection_policy="flag",
        fused=True,
    ),
    GroupOptions(judge_temperature=float("nan"), seed=2**70, canary_threshold=float("inf")),
]


@pytest.mark.parametrize("rollouts", ROLLOUT_SETS)
@pytest.mark.parametrize("options", OPTIONS)
def test_fingerprint_is_the_old_digest(rollouts, options):
    group = Group(prompt="Why \"seasons\"?\n\u00e9", rollouts=rollouts, mode="rubric", options=options)
    assert caching.group_fingerprint(group, "anchor", "judge", "v1") == old_fingerprint(group, "anchor", "judge", "v1")


@pytest.mark.parametrize(
    "group",
    [
        Group(prompt=[{"role": "user", "content": "q\u00e9"}], rollouts=["a", "b"], mode="judge", reference="42"),
        Group(
            prompt="p",
            rollouts=["a"],
            mode="rubric",
            rubric=(
                Criterion("s1", "has \"quotes\"", weight=3, source="caller", tags=("x", "\u00e9")),
                Criterion("s2", "pitfall", weight=-1.5, source="caller", importance="pitfall"),
            ),
            options=GroupOptions(rubric_source="supplied", aggregator="none"),
        ),
        Group(prompt="p", rollouts=["a", "b"], mode="verifiable", token_logprobs=((-0.1, -2.0), (-0.5,))),
    ],
)
def test_fingerprint_of_other_groups_is_the_old_digest(group):
    assert caching.group_fingerprint(group, "a", "j", "v") == old_fingerprint(group, "a", "j", "v")


def test_plain_ascii_only_for_text_json_holds_as_it_is():
    for rollouts in ROLLOUT_SETS:
        encoded = caching._plain_ascii(rollouts)
        if encoded is not None:
            assert ('["' + '", "'.join(b.decode() for b in encoded) + '"]') == json.dumps(rollouts)
    assert caching._plain_ascii(["plain ascii text", "another one"]) == [b"plain ascii text", b"another one"]
    for bad in ['a "q"', "b\\s", "c\n", "d\x7f", "\u00e9", "e\x1f"]:
        assert caching._plain_ascii(["fine", bad]) is None
    assert caching._plain_ascii(("a", "b")) is None and caching._plain_ascii([]) is None


@pytest.mark.parametrize(
    "prompt",
    [
        '"rollouts": []',
        'x", "rollouts": [], "y',
        [{"role": "user", "content": "q", "rollouts": []}],  # a nested key and value like the slot: the encoder
        [{"role": "user", "content": '"rollouts": []'}],
        [{"rollouts": ()}],
    ],
)
def test_fingerprint_with_the_slot_text_elsewhere(prompt):
    group = Group(prompt=prompt, rollouts=["plain one", "plain two"], mode="rubric")
    assert caching.group_fingerprint(group, "a", "j", "v") == old_fingerprint(group, "a", "j", "v")


@pytest.mark.parametrize("options", OPTIONS)
def test_plain_is_asdict(options):
    full = asdict(options)
    for name in full:
        converted = caching._option(options, name)
        assert repr(converted) == repr(full[name])  # tuples stay tuples, dicts in field order


def test_plain_falls_back_to_asdict_for_other_values():
    @dataclass
    class Holder:
        mapping: dict
        nested: list

    value = Holder({"b": [1, (2, 3)], "a": Sampling(0.1, None, 3)}, [Sampling(0.2, 0.9, 4), {"k": (1,)}])
    assert repr(caching._plain(value)) == repr(asdict(value))
    assert caching._plain(value)["mapping"] is not value.mapping  # copied, as asdict copies it


# --- the reference cache entry -----------------------------------------------------------------


def old_encode_reference(reference: Reference, rubric, rubric_info):
    return {
        "reference": {
            "text": reference.text,
            "aggregator": reference.aggregator,
            "answer": reference.answer,
            "details": reference.details,
        },
        "rubric": [asdict(c) for c in rubric],
        "rubric_info": rubric_info,
    }


class Tagged(Criterion):
    """A subclass: goes through asdict, as before."""


RUBRICS = [
    [],
    [Criterion(id=f"c{i + 1}", text=f"criterion {i}") for i in range(8)],
    [
        Criterion("s1", "t\u00e9", weight=2, source="caller", tags=("a", "b")),
        Criterion("c2", "p", weight=-1.0, importance="pitfall"),
        Criterion("c3", "listed tags", tags=["x"]),  # type: ignore[arg-type]
        Criterion("c4", "nested tags", tags=(("x",),)),  # type: ignore[arg-type]
        Tagged("c5", "subclass"),
        Criterion("c6", "float weight", weight=float("nan")),
    ],
]


@pytest.mark.parametrize("rubric", RUBRICS)
def test_encode_reference_is_the_old_entry(rubric):
    reference = Reference(text="ref", aggregator="synthesis", details={"finish_reason": "stop", "rubric": {"attempts": 1}})
    info = {"attempts": 1, "structured_output": True}
    new = caching.encode_reference(reference, rubric, info)
    old = old_encode_reference(reference, rubric, info)
    assert repr(new) == repr(old)
    assert json.dumps(new) == json.dumps(old)
    assert caching.decode_reference(new)[1] == caching.decode_reference(old)[1]


# --- aggregation: the rubric's part once per group ----------------------------------------------
import itertools  # noqa: E402
import random  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from cat_reward.engine import aggregation  # noqa: E402
from cat_reward.engine.types import Verdict  # noqa: E402


def old_aggregate(criteria, verdicts, options) -> float:
    """``aggregation.aggregate`` as written before this change."""
    by_id = {v.criterion_id: v for v in verdicts}
    if set(by_id) != {c.id for c in criteria} or len(verdicts) != len(criteria):
        raise ValueError("verdicts must cover every criterion exactly once")
    ordered = [by_id[c.id] for c in criteria]
    missing = [v.criterion_id for v in ordered if v.met is None]
    if missing:
        raise aggregation.Uncomputable("verdict_failed: " + ", ".join(missing))
    mode = options.aggregation
    weights = [aggregation.criterion_weight(c, mode, options.weights) for c in criteria]

    def weighted_fraction(ws, scores):
        positive = sum(w for w in ws if w > 0)
        if positive <= 0:
            raise aggregation.Uncomputable("no_positive_weight: no criterion of this rubric carries a positive weight")
        earned = sum(w * s for w, s in zip(ws, scores))
        return min(1.0, max(0.0, earned / positive))

    if mode == "soft":
        no_p = [v.criterion_id for v in ordered if v.p_yes is None]
        if no_p:
            raise aggregation.Uncomputable("p_yes_unavailable: the judge gave no yes/no logprobs for " + ", ".join(no_p))
        return weighted_fraction(weights, [float(v.p_yes) for v in ordered])
    met = [1.0 if v.met else 0.0 for v in ordered]
    reward = weighted_fraction(weights, met)
    if mode == "all_essential":
        essentials_met = all(v.met for c, v in zip(criteria, ordered) if not c.pitfall and c.importance in (None, "essential"))
        pitfall_met = any(v.met for c, v in zip(criteria, ordered) if c.pitfall)
        return 1.0 if essentials_met and not pitfall_met else reward * options.essential_factor
    if mode not in ("fraction", "weighted"):
        raise ValueError(f"unknown aggregation {mode!r}")
    return reward


def outcome_of(fn, *args):
    try:
        return ("ok", repr(fn(*args)))
    except Exception as exc:  # noqa: BLE001 - the same error, type and message
        return (type(exc).__name__, str(exc))


def random_rubric(rng: random.Random) -> list[Criterion]:
    n = rng.randint(0, 6)
    rubric = []
    for i in range(n):
        rubric.append(
            Criterion(
                id=rng.choice([f"c{i + 1}", f"c{i + 1}", "dup"]),
                text=f"t{i}",
                weight=rng.choice([1.0, 1.0, 2, 0.0, -1.0, 0.3, float("nan")]),
                importance=rng.choice([None, None, "essential", "important", "optional", "pitfall", "bogus"]),
            )
        )
    return rubric


def random_verdicts(rng: random.Random, rubric: Sequence[Criterion]) -> list[Verdict]:
    ids = [c.id for c in rubric]
    shape = rng.random()
    if shape < 0.15:
        rng.shuffle(ids)
    elif shape < 0.2 and ids:
        ids = ids[:-1]
    elif shape < 0.25:
        ids = ids + ["extra"]
    return [
        Verdict(criterion_id=i, met=rng.choice([True, False, True, None] if rng.random() < 0.2 else [True, False]),
                p_yes=rng.choice([None, 0.0, 0.37, 1.0]))
        for i in ids
    ]


@pytest.mark.parametrize("mode", ["fraction", "weighted", "all_essential", "soft", "bogus"])
def test_aggregator_is_aggregate(mode):
    rng = random.Random(mode)
    options = GroupOptions(aggregation=mode, weights=ImportanceWeights(essential=2.0, pitfall=0.5), essential_factor=0.3)
    for _ in range(400):
        rubric = random_rubric(rng)
        reward = aggregation.aggregator(rubric, options)
        for _ in range(4):
            verdicts = random_verdicts(rng, rubric)
            assert outcome_of(reward, verdicts) == outcome_of(old_aggregate, rubric, verdicts, options)
            assert outcome_of(aggregation.aggregate, rubric, verdicts, options) == outcome_of(old_aggregate, rubric, verdicts, options)


def test_aggregator_on_the_usual_rubric_is_exact():
    rubric = [Criterion(id=f"c{i + 1}", text="t") for i in range(8)]
    reward = aggregation.aggregator(rubric, GroupOptions())
    for mets in itertools.product([True, False], repeat=8):
        verdicts = [Verdict(criterion_id=f"c{i + 1}", met=m) for i, m in enumerate(mets)]
        assert repr(reward(verdicts)) == repr(old_aggregate(rubric, verdicts, GroupOptions()))


# --- diagnostics: counted in one pass --------------------------------------------------------------
from cat_reward.engine import diagnostics  # noqa: E402
from cat_reward.engine.types import RolloutOutcome  # noqa: E402


def old_signals(rubric, rollouts):
    signals = []
    for criterion in rubric:
        verdicts = [v for r in rollouts for v in r.verdicts if v.criterion_id == criterion.id and v.met is not None]
        met = sum(1 for v in verdicts if v.met)
        signals.append(diagnostics.CriterionSignal(criterion.id, met=met, judged=len(verdicts), discriminating=0 < met < len(verdicts)))
    return signals


def test_criterion_signals_are_the_old_ones():
    rng = random.Random(5)
    for _ in range(500):
        rubric = random_rubric(rng)
        rollouts = [RolloutOutcome(index=i, reward=None, verdicts=random_verdicts(rng, rubric)) for i in range(rng.randint(0, 5))]
        assert diagnostics.criterion_signals(rubric, rollouts) == old_signals(rubric, rollouts)


def test_criterion_signals_with_ids_that_are_not_strings():
    rubric = [Criterion(id=1, text="t"), Criterion(id="1", text="u")]  # type: ignore[arg-type]
    rollouts = [RolloutOutcome(index=0, reward=None, verdicts=[Verdict(criterion_id=True, met=True), Verdict(criterion_id="1", met=False)])]  # type: ignore[arg-type]
    assert diagnostics.criterion_signals(rubric, rollouts) == old_signals(rubric, rollouts)
    assert diagnostics.criterion_signals(rubric, rollouts)[0].met == 1  # True == 1, as == compares them


# --- metrics: the same series and counts -------------------------------------------------------
import asyncio  # noqa: E402

from prometheus_client import REGISTRY  # noqa: E402

from cat_reward.backends.instrumented import InstrumentedLLM  # noqa: E402
from cat_reward.engine.errors import LLMUnavailable  # noqa: E402
from cat_reward.engine.hacking import PERSUADED  # noqa: E402
from cat_reward.engine.injection import FLAG_PREFIX  # noqa: E402
from cat_reward.engine.ports import ChatRequest, ChatResult  # noqa: E402
from cat_reward.engine.types import Diagnostics, GroupOutcome, Usage  # noqa: E402
from cat_reward.rewarding import _observe  # noqa: E402


def samples(prefixes: tuple[str, ...]) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name.startswith(prefixes)
    }


def delta(before: dict, after: dict) -> dict:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0) or k not in before}


OBSERVED = ("cat_reward", "cat_rewards_uncomputed", "cat_verdict_", "cat_injection_", "cat_groups_scored", "cat_zero_variance")


def test_observe_counts_as_before():
    mode = "judge"  # a mode of its own here: series made now are this test's
    rollouts = [
        RolloutOutcome(index=0, reward=0.5, verdicts=[Verdict("c1", True, attempts=3), Verdict("c2", None), Verdict("c3", None, cached=True)]),
        RolloutOutcome(index=1, reward=None, verdicts=[Verdict("c1", None, attempts=2)], flags=[FLAG_PREFIX + "role", PERSUADED], policy="zero"),
        RolloutOutcome(index=2, reward=1.0, verdicts=[]),
        RolloutOutcome(index=3, reward=None, verdicts=[Verdict("c1", False, attempts=1)]),
    ]
    outcome = GroupOutcome(
        mode=mode, reference=Reference("r", "synthesis"), rubric=[], rollouts=rollouts, flags=[],
        diagnostics=Diagnostics(0.75, 0.25, False), usage=Usage(), fingerprint="f", anchor_model="a", judge_model="j",
        prompt_version="v",
    )
    before = samples(OBSERVED)
    _observe(outcome)
    changed = delta(before, samples(OBSERVED))
    assert changed[("cat_groups_scored_total", (("mode", mode),))] == 1
    assert changed[("cat_reward_count", (("mode", mode),))] == 2
    assert changed[("cat_reward_bucket", (("le", "0.5"), ("mode", mode)))] == 1
    assert changed[("cat_reward_bucket", (("le", "1.0"), ("mode", mode)))] == 2
    assert changed[("cat_rewards_uncomputed_total", (("mode", mode),))] == 2
    assert changed[("cat_verdict_retries_total", ())] == 3  # 2 + 1, cached verdicts not counted
    assert changed[("cat_verdict_parse_failures_total", ())] == 2
    assert changed[("cat_injection_flags_total", (("kind", "role"),))] == 1
    assert changed[("cat_injection_flags_total", (("kind", PERSUADED),))] == 1
    assert changed[("cat_injection_policy_actions_total", (("policy", "zero"),))] == 1


class Inner:
    role = "anchor"
    model = "m"

    def __init__(self) -> None:
        self.fail = False

    async def chat(self, request):
        if self.fail:
            raise LLMUnavailable("down", role="anchor")
        return ChatResult(text="x", model="m", finish_reason="stop", prompt_tokens=7, completion_tokens=3, latency_s=0.0)


def test_instrumented_counts_as_before_and_makes_series_when_it_did():
    inner = Inner()
    llm = InstrumentedLLM(inner)
    llm.role = "anchor-test"  # series of this test only
    inner.role = "anchor-test"
    request = ChatRequest(messages=[{"role": "user", "content": "q"}], stage="s1", max_tokens=4, temperature=0.0)
    prefixes = ("cat_llm_calls", "cat_llm_tokens", "cat_llm_call_duration")

    def mine() -> dict:
        return {k: v for k, v in samples(prefixes).items() if ("role", "anchor-test") in k[1]}

    inner.fail = True
    with pytest.raises(LLMUnavailable):
        asyncio.run(llm.chat(request))
    after_error = mine()
    assert after_error[("cat_llm_calls_total", (("outcome", "error"), ("role", "anchor-test"), ("stage", "s1")))] == 1
    assert not any(k[0] == "cat_llm_tokens_total" or ("outcome", "ok") in k[1] for k in after_error)  # not made yet
    assert after_error[("cat_llm_call_duration_seconds_count", (("role", "anchor-test"), ("stage", "s1")))] == 1
    inner.fail = False
    for _ in range(2):
        asyncio.run(llm.chat(request))
    after = mine()
    assert after[("cat_llm_calls_total", (("outcome", "ok"), ("role", "anchor-test"), ("stage", "s1")))] == 2
    assert after[("cat_llm_tokens_total", (("kind", "prompt"), ("role", "anchor-test"), ("stage", "s1")))] == 14
    assert after[("cat_llm_tokens_total", (("kind", "completion"), ("role", "anchor-test"), ("stage", "s1")))] == 6
    assert after[("cat_llm_call_duration_seconds_count", (("role", "anchor-test"), ("stage", "s1")))] == 3


# --- rubric: the duplicate key -----------------------------------------------------------------
import re  # noqa: E402
import string  # noqa: E402

from cat_reward.engine import hacking, self_proposed_rubrics  # noqa: E402


def old_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def test_duplicate_key_is_the_old_one():
    rng = random.Random(11)
    alphabet = string.printable + "\u00e9\u00c9\u0130\u212a\u00df\u4e2d \t\n\x00\x7f\u2022\u00a0\u2003"
    texts = ["", " ", "A", "  Two  words ", "3. The response, (a) uses: x^2!", "K\u212a", "\u0130stanbul", "stra\u00dfe"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    for text in texts:
        assert self_proposed_rubrics._key(text) == old_key(text), repr(text)


def test_dedupe_keeps_what_it_kept():
    candidates = ["1. The answer is 42.", "the answer is 42", "THE ANSWER, IS 42!", "- Short", "A distinct criterion here.",
                  "Caf\u00e9 au lait is named.", "cafe au lait is named", "Caf\u00c9 AU LAIT is named."]
    assert self_proposed_rubrics.dedupe_criteria(candidates) == [
        "The answer is 42.", "A distinct criterion here.", "Caf\u00e9 au lait is named.", "cafe au lait is named",
    ]


# --- canaries: one draw of the OS's generator for a group's nonces -------------------------------


def test_nonces_look_as_they_did():
    assert hacking._nonces(0) == []
    for count in (1, 2, 8, 64):
        nonces = hacking._nonces(count)
        assert len(nonces) == count
        assert all(re.fullmatch(r"[0-9A-F]{10}", n) for n in nonces)
        assert len(set(nonces)) == count  # 40 random bits each: a repeat here is a bug


# --- the record's id: the hacking options' JSON kept per distinct values -------------------------
from dataclasses import replace  # noqa: E402

from cat_reward import rewarding  # noqa: E402


def old_result_fingerprint(fingerprint: str, group: Group) -> str:
    o = group.options
    hacking = {"policy": o.injection_policy, "penalty": o.injection_penalty, "canary": o.canary,
               "canary_threshold": o.canary_threshold}
    return fingerprint + ":" + json.dumps(hacking, sort_keys=True)


def test_result_fingerprint_is_the_old_one_whatever_came_before():
    values = [
        dict(),
        dict(injection_penalty=-1),
        dict(injection_penalty=-1.0),
        dict(injection_penalty=True),
        dict(injection_penalty=0.0),
        dict(injection_penalty=-0.0),
        dict(injection_penalty=0),
        dict(injection_penalty=float("nan")),
        dict(canary_threshold=float("inf")),
        dict(canary_threshold=1),
        dict(canary_threshold=1.0),
        dict(canary=False),
        dict(canary=0),
        dict(injection_policy="flag"),
        dict(injection_policy="caf\u00e9"),
    ]
    group = Group(prompt="p", rollouts=["a"], mode="rubric")
    for _ in range(2):  # the second round reads what the first one kept
        for changes in values + values[::-1]:
            g = replace(group, options=replace(GroupOptions(), **changes))
            assert rewarding._result_fingerprint("fp", g) == old_result_fingerprint("fp", g), changes


# --- wire -> domain: the options built without dataclasses.replace -------------------------------
from cat_reward.api import mapping  # noqa: E402
from cat_reward.api.schemas import RewardRequest  # noqa: E402


@pytest.mark.parametrize("defaults", OPTIONS)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"num_criteria": 3, "max_criteria": 4, "seed": 9, "cache": False, "injection_policy": "null"},
        {"aggregation": "weighted", "weights": {"essential": 2.0}, "length_penalty": {"max_tokens": 10},
         "ensemble": [{"judge": "judge", "prompt": "verdict"}], "scrl_margin": 0.3, "synthesis": {"temperature": 0.1}},
    ],
)
def test_options_of_is_replace(defaults, options):
    request = RewardRequest.model_validate({"prompt": "p", "rollouts": ["a"], "options": options})
    built = mapping.options_of(request, defaults)
    original = mapping._options_with
    try:
        mapping._options_with = replace  # the old way: dataclasses.replace
        expected = mapping.options_of(request, defaults)
    finally:
        mapping._options_with = original
    assert type(built) is GroupOptions
    assert built == expected and hash(built) == hash(expected)
    assert list(built.__dict__.items()) == list(expected.__dict__.items())
    with pytest.raises(TypeError):
        mapping._options_with(defaults, no_such_option=1)


# --- the result document's verdicts ------------------------------------------------------------
from cat_reward import audit  # noqa: E402
from cat_reward.engine.types import MemberVerdict  # noqa: E402


def old_verdict_document(v: Verdict) -> dict:
    document = dict(v.__dict__)
    if v.members:
        document["members"] = [dict(m.__dict__) for m in v.members]
    else:
        del document["members"]
        del document["spread"]
    return document


@pytest.mark.parametrize(
    "verdict",
    [
        Verdict("c1", True),
        Verdict("c2", None, error="unparseable", attempts=3, raw="maybe"),
        Verdict("c3", False, p_yes=0.25, cached=True),
        Verdict("c4", True, p_yes=0.9, members=(MemberVerdict("judge/verdict", True, 0.9), MemberVerdict("j2/verdict_p1", None, error="x")), spread=0.4),
        caching._verdict(criterion_id="c5", met=True, p_yes=None, raw="yes", attempts=1, cached=True),
    ],
)
def test_verdict_document_is_the_old_one(verdict):
    new, old = audit.verdict_document(verdict), old_verdict_document(verdict)
    assert list(new.items()) == list(old.items())
    assert json.dumps(new) == json.dumps(old)
    assert "members" in verdict.__dict__  # the verdict itself is left whole


# --- a group's usage of batched scores -----------------------------------------------------------
from cat_reward.engine.context import GroupContext  # noqa: E402
from cat_reward.engine.ports import Roles, YesNoScore  # noqa: E402
from cat_reward.engine.prompts import load_prompt_set  # noqa: E402


class Scorer:
    model = "j"

    def __init__(self, answers):
        self.answers = list(answers)

    async def score_yes_no(self, prompts, **kwargs):
        return self.answers.pop(0)


def test_judge_scores_counts_batches_and_tokens_as_before():
    def score(batch, prompt_tokens, completion_tokens=1):
        return YesNoScore(text="yes", top_logprobs={}, model="j", prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens, batch_id=batch)

    calls = [
        [score("b1", 10), score("b1", 11), score("b2", 7, 2)],
        [score("b2", 3), score("b3", 4)],  # b2 already counted for this stage
        [score("b1", 5)],  # another stage: counted again
        [],
    ]
    stages = ["verdict", "verdict", "canary", "verdict"]
    ctx = GroupContext(group=Group(prompt="p", rollouts=["a"], mode="rubric"), roles=Roles(anchor=None, judge=Scorer(calls)),
                       prompts=load_prompt_set(), checker=None)

    async def run():
        for stage in stages:
            await ctx.judge_scores(["x"], stage, temperature=0.0, seed=None, choices=("yes", "no"))

    asyncio.run(run())
    assert (ctx.usage.stages["verdict"].calls, ctx.usage.stages["verdict"].prompt_tokens, ctx.usage.stages["verdict"].completion_tokens) == (3, 35, 6)
    assert (ctx.usage.stages["canary"].calls, ctx.usage.stages["canary"].prompt_tokens) == (1, 5)


def old_decode_rubric(entry: dict) -> list[Criterion]:
    return [
        Criterion(
            id=str(c["id"]), text=str(c["text"]), weight=float(c["weight"]), source=c.get("source", "anchor"),
            tags=tuple(c.get("tags", ())), importance=c.get("importance"),
        )
        for c in entry["rubric"]
    ]


@pytest.mark.parametrize("rubric", RUBRICS)
def test_decode_reference_gives_the_old_criteria(rubric):
    reference = Reference(text="ref", aggregator="synthesis")
    entry = json.loads(json.dumps(caching.encode_reference(reference, rubric, None)))  # as a cache hands it back
    entry["rubric"] = [{k: v for k, v in c.items() if k not in ("source", "tags")} if i % 2 else c for i, c in enumerate(entry["rubric"])]
    decoded = caching.decode_reference(entry)[1]
    expected = old_decode_rubric(entry)
    assert decoded == expected
    assert [type(c) for c in decoded] == [Criterion] * len(expected)
    assert [list(c.__dict__.items()) for c in decoded] == [list(c.__dict__.items()) for c in expected]
    assert caching.decode_reference({"reference": entry["reference"], "rubric": [{"text": "no id"}]}) is None


# --- prompts built from a template's pieces: render()'s text -------------------------------------
from cat_reward.engine.aggregators import synthesis  # noqa: E402
from cat_reward.engine.conversation import render_question  # noqa: E402
from cat_reward.engine.judge import verdict_messages  # noqa: E402
from cat_reward.engine.prompts import PromptSet  # noqa: E402


def old_synthesis_messages(ctx) -> list[dict[str, str]]:
    group, prompts = ctx.group, ctx.prompts
    texts, _ = hacking.anchor_inputs(ctx)
    responses = "\n\n".join(
        prompts.render("response.item", number=str(i + 1), response=r.strip()) for i, r in enumerate(texts)
    )
    question = ""
    if group.options.include_question:
        question = prompts.render("question.block", question=render_question(group.prompt)) + "\n\n"
    template = "synthesis_math.user" if group.mode == "verifiable" else "synthesis_free.user"
    user = prompts.render(template, question=question, count=str(len(texts)), responses=responses)
    return [{"role": "system", "content": prompts.render("synthesis.system")}, {"role": "user", "content": user}]


def prompt_sets() -> list[PromptSet]:
    shipped = load_prompt_set()
    odd = dict(shipped.templates)
    odd["response.item"] = "{{response}} (answer {{number}}, again {{number}})"  # another shape: render()
    odd["canary.criterion"] = "Code {{nonce}} and {{nonce}}."
    swapped = dict(shipped.templates)
    swapped["response.item"] = "R: {{response}} / N: {{number}}"
    return [shipped, PromptSet("odd", "odd+1", odd), PromptSet("swapped", "swapped+1", swapped)]


@pytest.mark.parametrize("prompts", prompt_sets(), ids=lambda p: p.name)
@pytest.mark.parametrize("mode", ["rubric", "verifiable"])
@pytest.mark.parametrize("include_question", [False, True])
def test_synthesis_messages_are_render_s(prompts, mode, include_question):
    rollouts = ["  padded answer \n", "caf\u00e9 {{number}} \\ \"q\"", "", "last one"]
    group = Group(prompt="Why?", rollouts=rollouts, mode=mode, options=GroupOptions(include_question=include_question))
    ctx = GroupContext(group=group, roles=Roles(anchor=None, judge=None), prompts=prompts, checker=None)
    ctx._injection = [[], [], [], []]
    assert synthesis.synthesis_messages(ctx) == old_synthesis_messages(ctx)


@pytest.mark.parametrize("prompts", prompt_sets(), ids=lambda p: p.name)
def test_canary_criteria_are_render_s(prompts):
    ctx = GroupContext(group=Group(prompt="p", rollouts=["a"], mode="rubric"), roles=Roles(anchor=None, judge=None),
                       prompts=prompts, checker=None)
    nonces = ["0123456789", "ABCDEF0123"]
    assert hacking._canary_criteria(ctx, nonces) == [hacking.canary_criterion(ctx, n) for n in nonces]
    assert hacking._canary_criteria(ctx, []) == []


def test_verdict_messages_text_is_the_concatenation():
    ctx = GroupContext(group=Group(prompt="p", rollouts=["a"], mode="rubric"), roles=Roles(anchor=None, judge=None),
                       prompts=load_prompt_set(), checker=None)
    messages = verdict_messages(ctx, "resp <response> x", "The criterion.")
    assert messages[1]["content"] == load_prompt_set().render(
        "verdict.user", response=hacking.fence("resp <response> x"), criterion="The criterion."
    )


def test_anchor_criteria_are_criterion_s():
    made = self_proposed_rubrics._criterion(id="c1", text="t")
    expected = Criterion(id="c1", text="t")
    assert type(made) is Criterion and made == expected and hash(made) == hash(expected)
    assert list(made.__dict__.items()) == list(expected.__dict__.items())


def test_documents_of_canaries_and_signals_are_plain_copies():
    from cat_reward.engine.types import CanaryResult, CriterionSignal

    canary = CanaryResult(criterion="c", met=False, p_yes=0.1, raw="no", persuaded=False)
    rollout = RolloutOutcome(index=0, reward=1.0, canary=canary)
    document = audit.rollout_documents([rollout])[0]["canary"]
    assert list(document.items()) == list(dict(canary.__dict__).items()) and document is not canary.__dict__
    signal = CriterionSignal("c1", met=1, judged=2, discriminating=True)
    diagnostics = Diagnostics(0.5, 0.5, False, criteria=[signal])
    criteria = audit.diagnostics_document(diagnostics)["criteria"]
    assert criteria == [{"criterion_id": "c1", "met": 1, "judged": 2, "discriminating": True}]
    criteria[0]["met"] = 99
    assert signal.met == 1  # a copy, not the signal's own dict
