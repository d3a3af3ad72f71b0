"""The rules openapi.json names under ``x-cat-rules`` (JSON Schema cannot say them), kept in a
generated request: each rule id has a repair here that turns a case breaking it into one keeping
it, and changes nothing else. tests/fuzz/exceptions.yaml gives each rule's reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cat_reward.settings import Settings

DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}


def _prompt_chars(body: dict, limit: int) -> None:
    prompt = body.get("prompt")
    if not isinstance(prompt, list):
        return
    room = limit
    for message in prompt:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            message["content"] = message["content"][: max(room, 0)]
            room -= len(message["content"])


def _criteria_order(body: dict) -> None:
    options = body.get("options")
    if not isinstance(options, dict) or options.get("max_criteria") is None:
        return
    low = options.get("num_criteria")
    low = DEFAULTS["min_criteria"] if low is None else low
    if low > options["max_criteria"]:
        options["num_criteria"] = options["max_criteria"]


def _distinct_members(body: dict) -> None:
    options = body.get("options")
    if not isinstance(options, dict) or not isinstance(options.get("ensemble"), list):
        return
    seen, kept = set(), []
    for member in options["ensemble"]:
        key = (member.get("judge", "judge"), member.get("prompt", "verdict"))
        if key not in seen:
            seen.add(key)
            kept.append(member)
    options["ensemble"] = kept


def _token_counter(body: dict) -> None:
    # The fuzzed service's judge is a stub without /tokenize, and a generated tokenizer name loads
    # nothing: a length penalty cannot be counted there, so valid cases leave it out.
    options = body.get("options")
    if isinstance(options, dict):
        options.pop("length_penalty", None)


def _logprobs_per_rollout(body: dict) -> None:
    logprobs, rollouts = body.get("token_logprobs"), body.get("rollouts")
    if isinstance(logprobs, list) and isinstance(rollouts, list):
        body["token_logprobs"] = (logprobs + [[] for _ in rollouts])[: len(rollouts)]


def _index_in_group(body: dict) -> None:
    size = body.get("group", {}).get("size")
    for sample in body.get("samples", []):
        if isinstance(size, (int, float)) and size >= 1 and isinstance(sample.get("index"), (int, float)):
            sample["index"] = int(sample["index"]) % int(size)


def _equal_lengths(body: dict) -> None:
    n = len(body["query"])
    body["prompts"] = (body["prompts"] + ["p"] * n)[:n]
    if isinstance(body.get("labels"), list):
        body["labels"] = (body["labels"] + [None] * n)[:n]


def _query_is_prompt_plus_response(body: dict) -> None:
    limit = DEFAULTS["max_rollout_chars"]
    body["query"] = [
        query if query.startswith(prompt) else prompt + query[:limit]
        for query, prompt in zip(body["query"], body["prompts"])
    ]


def _one_prompt_filter(query: dict) -> None:
    if query.get("prompt") is not None and query.get("prompt_hash") is not None:
        del query["prompt_hash"]


def _issued_cursor(query: dict) -> None:
    query.pop("cursor", None)  # a made-up cursor is refused; only one the service issued is valid


def _known_parameters(query: dict) -> None:
    pass  # generated cases hold only the listed parameters


PROMPT_LIMIT = DEFAULTS["max_prompt_chars"]

# schema (or operation) -> rule id -> repair of the body (or query)
REPAIRS: dict[str, dict[str, Callable[[dict], None]]] = {
    "RewardRequest": {
        "logprobs_per_rollout": _logprobs_per_rollout,
        "prompt_chars": lambda body: _prompt_chars(body, PROMPT_LIMIT),
        "criteria_order": _criteria_order,
        "distinct_members": _distinct_members,
        "token_counter": _token_counter,
    },
    "SamplesRequest": {
        "index_in_group": _index_in_group,
        "prompt_chars": lambda body: _prompt_chars(body, PROMPT_LIMIT),
        "criteria_order": _criteria_order,
        "distinct_members": _distinct_members,
        "token_counter": _token_counter,
    },
    "OpenRLHFRequest": {
        "equal_lengths": _equal_lengths,
        "query_is_prompt_plus_response": _query_is_prompt_plus_response,
    },
    "GET /rubrics": {
        "one_prompt_filter": _one_prompt_filter,
        "issued_cursor": _issued_cursor,
        "known_parameters": _known_parameters,
    },
}


def _apply(owner: str, value: Any) -> None:
    if isinstance(value, dict):
        for repair in REPAIRS[owner].values():
            repair(value)


def repair_case(method: str, path: str, body: Any, query: dict | None) -> None:
    """Make a positive case keep every x-cat-rule of its operation (in place)."""
    if method == "POST" and path == "/rewards":
        _apply("RewardRequest", body)
    elif method == "POST" and path == "/rewards/batch" and isinstance(body, dict):
        for group in body.get("groups", []):
            _apply("RewardRequest", group)
    elif method == "POST" and path == "/rewards/samples":
        _apply("SamplesRequest", body)
    elif method == "POST" and path == "/openrlhf/reward":
        _apply("OpenRLHFRequest", body)
    elif method == "GET" and path == "/rubrics" and query is not None:
        _apply("GET /rubrics", query)
