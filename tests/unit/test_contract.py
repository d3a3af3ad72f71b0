"""The served /openapi.json is exact for its own settings (api/contract.py): the limits, the
configured judges and the default mode and aggregator are in it, so a client generated from a
deployment's document builds what that deployment accepts. (tests/fuzz checks the committed
document, the default settings, against a running service.)"""

from __future__ import annotations

from jsonschema import Draft202012Validator

from cat_reward.api import create_app
from cat_reward.settings import Settings


def _validator(document: dict, name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})


def test_the_document_states_the_settings_limits_and_judges():
    settings = Settings(
        max_rollouts=32, max_rollout_chars=1000, max_prompt_chars=500, max_groups_per_batch=7,
        extra_judges={"second": {"base_url": "http://127.0.0.1:9/v1"}}, length_penalty_max_tokens=750,
    )
    schemas = create_app(settings).openapi()["components"]["schemas"]
    reward = schemas["RewardRequest"]["properties"]
    assert reward["rollouts"]["maxItems"] == 32 and reward["rollouts"]["items"]["maxLength"] == 1000
    assert reward["prompt"]["anyOf"][0]["maxLength"] == 500
    assert schemas["GroupSpec"]["properties"]["size"]["maximum"] == 32
    assert schemas["BatchRequest"]["properties"]["groups"]["maxItems"] == 7
    assert schemas["EnsembleMemberIn"]["properties"]["judge"]["enum"] == ["judge", "second"]
    assert "required" not in schemas["LengthPenaltyIn"]  # a configured max_tokens stands in
    default = create_app(Settings()).openapi()["components"]["schemas"]
    assert default["LengthPenaltyIn"]["required"] == ["max_tokens"]
    assert default["RewardRequest"]["properties"]["rollouts"]["maxItems"] == Settings().max_rollouts


def test_the_rules_take_the_default_mode_of_the_settings():
    majority = {"prompt": "What is 2 + 3?", "rollouts": ["5"], "options": {"aggregator": "majority"}}
    rubric_default = _validator(create_app(Settings()).openapi(), "RewardRequest")
    verifiable_default = _validator(create_app(Settings(default_mode="verifiable")).openapi(), "RewardRequest")
    assert not rubric_default.is_valid(majority)  # mode left out = rubric: majority needs verifiable
    assert rubric_default.is_valid({**majority, "mode": "verifiable"})
    assert verifiable_default.is_valid(majority)


def test_rules_between_fields_are_in_the_document():
    check = _validator(create_app(Settings()).openapi(), "RewardRequest")
    base = {"prompt": "q", "rollouts": ["a"]}
    assert check.is_valid(base)
    refused = [
        {**base, "prompt": " \t\n"},  # blank
        {**base, "reference": "5", "options": {"aggregator": "synthesis"}},  # a reference goes with 'given'
        {**base, "options": {"aggregator": "given"}},  # 'given' needs a reference
        {**base, "rubric": [{"criterion": "c", "points": -1}]},  # a supplied rubric needs a positive criterion
        {**base, "rubric": [{"criterion": "c"}], "mode": "judge"},  # ... and mode rubric
        {**base, "rubric": [{"criterion": "c", "points": 0}]},  # points are non-zero
        {**base, "options": {"rubric_source": "anchor"}, "rubric": [{"criterion": "c"}]},
        {**base, "options": {"fused": True, "aggregator": "majority"}, "mode": "verifiable"},
        {**base, "mode": "judge", "options": {"aggregation": "soft"}},  # aggregation acts on rubric verdicts
        {**base, "options": {"rubric_prompt": "weighted", "fused": True}},
        {**base, "metadata": {"group_id": "a\x00"}},
    ]
    for body in refused:
        assert not check.is_valid(body), body
    accepted = [
        {**base, "reference": "5"},
        {**base, "rubric": [{"criterion": "c"}]},  # supplied by default, aggregator none by default
        {**base, "rubric": [{"criterion": "c", "points": -1}, {"criterion": "d", "points": 2}], "options": {"rubric_source": "both"}},
        {**base, "mode": "verifiable", "options": {"aggregator": "scrl"}, "token_logprobs": [[-0.1]]},
        {**base, "options": {"fused": True}},
    ]
    for body in accepted:
        assert check.is_valid(body), body
