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


def test_json_strings_is_the_encoder():
    for rollouts in ROLLOUT_SETS:
        assert caching._json_strings(rollouts) == json.dumps(rollouts, sort_keys=True, default=str)


def test_encode_with_puts_the_value_where_sort_keys_would():
    for payload in ({}, {"a": 1}, {"z": [1, 2]}, {"a": "x", "rollouts_": 1, "rollout": None, "z": {"b": 1, "a": 2}}):
        value = ["v\u00e9"]
        expected = json.dumps({**payload, "rollouts": value}, sort_keys=True)
        assert caching._encode_with(payload, "rollouts", json.dumps(value)) == expected


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
