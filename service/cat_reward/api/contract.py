"""What openapi.json promises, made exact: a request the document allows is one this service
accepts, and one it refuses is one the document forbids.

The wire models (``schemas``) give each field's own rules (types, bounds, minLength, patterns).
This module adds what a field cannot say alone, for one deployment's settings:

- the size limits of the settings (CAT_MAX_ROLLOUTS, CAT_MAX_ROLLOUT_CHARS, CAT_MAX_PROMPT_CHARS,
  CAT_MAX_GROUPS_PER_BATCH and the admission limit) as maxItems / maxLength / maximum;
- the rules between fields, as JSON Schema (OpenAPI 3.1) ``if``/``then``, ``not`` and
  ``dependentRequired``: which mode, aggregator and rubric source go together, with the service's
  default mode and aggregator standing in for a field left out;
- the rules JSON Schema cannot say (equal lengths, one field below another, a prefix, a sum of
  lengths) under ``x-cat-rules`` on the schema or operation they belong to: ``{id: text}``, each
  also named in the field's description. ``tests/fuzz`` reads them: every id has a check there,
  and tests/fuzz/exceptions.yaml gives each its reason.

openapi.json at the top of the repository is this document for the default settings
(``cat-reward openapi``); a deployment serves its own at /openapi.json.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ..engine.judge import verdict_variants
from ..engine.prompts import load_prompt_set
from ..settings import Settings
from .schemas import INT64_MAX, NONBLANK

Schema = dict[str, Any]

# Rules that JSON Schema cannot express, by the schema (or "METHOD /path") they belong to.
RULES: dict[str, dict[str, str]] = {
    "RewardRequest": {
        "logprobs_per_rollout": "token_logprobs, when sent, holds one list per rollout.",
        "prompt_chars": "The prompt's messages hold at most CAT_MAX_PROMPT_CHARS characters of content, summed.",
        "criteria_order": "options.num_criteria (default CAT_MIN_CRITERIA) does not exceed options.max_criteria.",
        "distinct_members": "options.ensemble names each (judge, prompt) member once, defaults filled in.",
        "token_counter": "options.length_penalty needs its tokens counted: a tokenizer that loads here, or a judge "
        "that serves /tokenize (vLLM).",
    },
    "SamplesRequest": {
        "index_in_group": "Every samples[].index is below group.size.",
        "prompt_chars": "The prompt's messages hold at most CAT_MAX_PROMPT_CHARS characters of content, summed.",
        "criteria_order": "options.num_criteria (default CAT_MIN_CRITERIA) does not exceed options.max_criteria.",
        "distinct_members": "options.ensemble names each (judge, prompt) member once, defaults filled in.",
        "token_counter": "options.length_penalty needs its tokens counted: a tokenizer that loads here, or a judge "
        "that serves /tokenize (vLLM).",
    },
    "OpenRLHFRequest": {
        "equal_lengths": "prompts, and labels when sent, hold one entry per query.",
        "query_is_prompt_plus_response": "Each query starts with its prompt (OpenRLHF sends query = prompt + "
        "response); the response, less trailing special tokens, has at most CAT_MAX_ROLLOUT_CHARS characters.",
    },
    "GET /rubrics": {
        "one_prompt_filter": "Give prompt or prompt_hash, not both.",
        "issued_cursor": "cursor is a next_cursor this service returned.",
        "known_parameters": "No query parameter besides those listed.",
    },
}


def install(app: FastAPI, settings: Settings) -> None:
    """``app.openapi()`` returns the exact contract for ``settings``."""

    def openapi() -> Schema:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)  # FastAPI's own, cached on the app
            tighten(document, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def tighten(document: Schema, settings: Settings) -> None:
    _exact_integer_bounds(document)
    _query_parameters_not_null(document)
    schemas = document["components"]["schemas"]
    for name in ("RewardRequest", "SamplesRequest"):
        _limits(schemas[name], settings)
    reward, samples = schemas["RewardRequest"], schemas["SamplesRequest"]
    reward["allOf"] = _reward_rules(settings)
    samples["allOf"] = _sample_rules(settings)
    schemas["GroupSpec"]["properties"]["size"]["maximum"] = settings.max_rollouts
    for item in ("SampleIn",):
        schemas[item]["properties"]["rollout"]["maxLength"] = settings.max_rollout_chars
    batch = schemas["BatchRequest"]["properties"]["groups"]
    batch["maxItems"] = min(settings.max_groups_per_batch, settings.active_groups + settings.max_queued_groups)
    batch["description"] += (
        " At most CAT_MAX_GROUPS_PER_BATCH, and at most CAT_MAX_ACTIVE_GROUPS + CAT_MAX_QUEUED_GROUPS."
    )
    if not settings.length_penalty_max_tokens:  # nothing configured to stand in for a missing max_tokens
        length = schemas["LengthPenaltyIn"]
        field = length["properties"]["max_tokens"]
        integer = next(branch for branch in field.pop("anyOf") if branch.get("type") == "integer")
        field.update(integer)
        field["description"] += " Required here: no CAT_LENGTH_PENALTY_MAX_TOKENS is configured."
        length["required"] = ["max_tokens"]
    member = schemas["EnsembleMemberIn"]["properties"]
    member["judge"]["enum"] = ["judge", *sorted(settings.extra_judges)]
    member["prompt"]["enum"] = verdict_variants(load_prompt_set(settings.prompt_set))
    openrlhf = schemas["OpenRLHFRequest"]["properties"]
    openrlhf["prompts"]["items"].update(minLength=1, pattern=NONBLANK, maxLength=settings.max_prompt_chars)
    for name, rules in RULES.items():
        if " " in name:
            method, path = name.split(" ", 1)
            document["paths"][path][method.lower()]["x-cat-rules"] = dict(rules)
        else:
            schemas[name]["x-cat-rules"] = dict(rules)


def _exact_integer_bounds(node: Any) -> None:
    """FastAPI writes every bound as a float (2**63 - 1 becomes 2**63): an integer's bounds are
    integers again, the 64-bit ones exact."""
    if isinstance(node, list):
        for item in node:
            _exact_integer_bounds(item)
    elif isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum"):
                bound = node.get(key)
                if isinstance(bound, float):
                    node[key] = INT64_MAX if bound >= INT64_MAX else -(2**63) if bound <= -(2**63) else int(bound)
        for value in node.values():
            _exact_integer_bounds(value)


def _query_parameters_not_null(document: Schema) -> None:
    """A query string cannot carry null: an optional parameter is left out, never null (FastAPI
    writes `str | None` as anyOf string/null, and a client would send `?prompt_hash=`)."""
    for methods in document["paths"].values():
        for operation in methods.values():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
                if parameter["in"] == "query" and len(branches) == 1 and len(schema["anyOf"]) == 2:
                    del schema["anyOf"]
                    schema.update(branches[0])


def _limits(schema: Schema, settings: Settings) -> None:
    props = schema["properties"]
    text, messages = props["prompt"]["anyOf"]
    text["maxLength"] = settings.max_prompt_chars
    props["reference"]["anyOf"][0]["maxLength"] = settings.max_rollout_chars
    if "rollouts" in props:
        props["rollouts"]["maxItems"] = settings.max_rollouts
        props["rollouts"]["items"]["maxLength"] = settings.max_rollout_chars


# --- rules between fields ----------------------------------------------------------------------
# "set" means present and not null; a field left out (or null) takes the service's default. Every
# condition is written without `not`, so that generators (and readers) need not negate schemas.

MODES = ("rubric", "verifiable", "judge")
SOURCES = ("anchor", "supplied", "both")
AGGREGATORS = ("synthesis", "majority", "given", "scrl", "none")


def _set(name: str, kind: str = "string") -> Schema:
    return {"required": [name], "properties": {name: {"type": kind}}}


def _unset(name: str) -> Schema:
    return {"properties": {name: {"type": "null"}}}  # absent, or null


def _is(name: str, *values: Any) -> Schema:
    return {"required": [name], "properties": {name: {"enum": list(values)}}}


def _option(schema: Schema) -> Schema:
    return {"required": ["options"], "properties": {"options": schema}}


def _option_unset(name: str) -> Schema:
    return {"properties": {"options": _unset(name)}}


def _any(*branches: Schema) -> Schema:
    return branches[0] if len(branches) == 1 else {"anyOf": list(branches)}


def _all(*parts: Schema) -> Schema:
    return parts[0] if len(parts) == 1 else {"allOf": list(parts)}


def _mode(settings: Settings, *modes: str) -> Schema:
    """The mode in effect is one of ``modes``."""
    return _any(_is("mode", *modes), *([_unset("mode")] if settings.default_mode in modes else []))


def _source(*sources: str) -> Schema:
    """The rubric source in effect is one of ``sources`` (default: 'supplied' when a rubric is sent,
    else 'anchor')."""
    branches = [_option(_is("rubric_source", *sources))]
    if "supplied" in sources:
        branches.append(_all(_option_unset("rubric_source"), _set("rubric", "array")))
    if "anchor" in sources:
        branches.append(_all(_option_unset("rubric_source"), _unset("rubric")))
    return _any(*branches)


def _aggregator(settings: Settings, *names: str) -> Schema:
    """The aggregator in effect is one of ``names`` (default: 'given' with a reference, 'none' for
    a supplied rubric alone, else CAT_DEFAULT_AGGREGATOR)."""
    unset = _option_unset("aggregator")
    branches = [_option(_is("aggregator", *names))]
    if "given" in names:
        branches.append(_all(unset, _set("reference")))
    if "none" in names:
        branches.append(_all(unset, _unset("reference"), _source("supplied")))
    if settings.default_aggregator in names:
        branches.append(_all(unset, _unset("reference"), _source("anchor", "both")))
    return _any(*branches)


def _others(values: tuple, *excluded: str) -> tuple:
    return tuple(v for v in values if v not in excluded)


def _rule(text: str, when: Schema, then: Schema) -> Schema:
    return {"description": text, "if": when, "then": then}


def _scoring_rules(settings: Settings) -> list[Schema]:
    # Only options a request names are held here: the settings' defaults (CAT_AGGREGATION, ...)
    # apply where they can and are otherwise not used.
    return [
        _rule(
            "Outside mode 'rubric' a request names no aggregation but 'fraction', no rubric_prompt but "
            "'standard', no ensemble.",
            _mode(settings, *_others(MODES, "rubric")),
            {
                "properties": {
                    "options": {
                        "properties": {
                            "aggregation": {"enum": ["fraction", None]},
                            "rubric_prompt": {"enum": ["standard", None]},
                            "ensemble": {"type": "null"},
                        }
                    }
                }
            },
        ),
        _rule(
            "rubric_prompt 'weighted' asks the anchor for a rubric: not with fused, nor a supplied rubric alone.",
            _option(_is("rubric_prompt", "weighted")),
            _all({"properties": {"options": {"properties": {"fused": {"enum": [False, None]}}}}}, _source("anchor", "both")),
        ),
    ]


def _common_rules(settings: Settings) -> list[Schema]:
    return [
        *_scoring_rules(settings),
        _rule(
            "A reference goes with aggregator 'given' (or none named).",
            _set("reference"),
            _any(_option_unset("aggregator"), _option(_is("aggregator", "given"))),
        ),
        _rule("Aggregator 'given' needs a reference.", _aggregator(settings, "given"), _set("reference")),
        _rule(
            "Aggregators 'majority' and 'scrl' need mode 'verifiable'.",
            _aggregator(settings, "majority", "scrl"),
            _mode(settings, "verifiable"),
        ),
        _rule(
            "options.fused needs mode 'rubric', aggregator 'synthesis' and the anchor's own rubric.",
            _option(_is("fused", True)),
            _all(_mode(settings, "rubric"), _aggregator(settings, "synthesis"), _source("anchor")),
        ),
    ]


_POSITIVE_ITEM = {"properties": {"points": {"exclusiveMinimum": 0}}}  # points left out are 1


def _reward_rules(settings: Settings) -> list[Schema]:
    return [
        *_common_rules(settings),
        _rule(
            "rubric_source 'supplied' or 'both' needs mode 'rubric' and a rubric with a criterion of positive points.",
            _source("supplied", "both"),
            _all(_mode(settings, "rubric"), _set("rubric", "array"), {"properties": {"rubric": {"contains": _POSITIVE_ITEM}}}),
        ),
        _rule("rubric_source 'anchor' takes no rubric.", _option(_is("rubric_source", "anchor")), _unset("rubric")),
        _rule("Aggregator 'none' needs rubric_source 'supplied'.", _aggregator(settings, "none"), _source("supplied")),
    ]


def _sample_rules(settings: Settings) -> list[Schema]:
    # No rubric travels with samples: SampleOptions has no 'none' aggregator and no supplied source.
    return _common_rules(settings)
