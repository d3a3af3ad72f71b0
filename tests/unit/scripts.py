"""Scripted anchor/judge behaviours shared by the unit tests."""

from __future__ import annotations

import json
from collections.abc import Callable

from cat_reward.backends.scripted import ScriptedLLM, yes_no_logprobs
from cat_reward.engine.ports import ChatRequest, ChatResult, Roles

CRITERIA = [
    "The response states that the sum is 5.",
    "The response shows the addition 2 + 3.",
    "The response ends with a boxed final answer.",
    "The response does not contradict itself.",
    "The response explains each step briefly.",
]


def anchor_script(reference: str = "2 + 3 = 5, so the answer is \\boxed{5}.", criteria: list[str] | None = None):
    criteria = CRITERIA if criteria is None else criteria

    def script(request: ChatRequest) -> str:
        if request.stage == "synthesis":
            return reference
        if request.stage == "rubric":
            return json.dumps({"criteria": criteria})
        raise AssertionError(f"anchor got an unexpected stage {request.stage}")

    return script


def response_of(request: ChatRequest) -> str:
    user = request.messages[-1]["content"]
    return user.split("<response>\n", 1)[1].split("\n</response>", 1)[0]


def criterion_of(request: ChatRequest) -> str:
    return request.messages[-1]["content"].split("Criterion: ", 1)[1].split("\n", 1)[0]


def is_canary(criterion: str) -> bool:
    """The hacking canary's criterion (a code word no honest answer contains)."""
    return "code word" in criterion


def judge_script(
    decide: Callable[[str, str], bool | str], p: float = 0.9, persuaded: Callable[[str], bool] | None = None
):
    """decide(response, criterion) -> True/False, or a raw reply string. The canary criterion gets
    "no" (a judge that reads), unless ``persuaded(response)``: then every criterion, the canary
    included, gets "yes" (a judge that obeys what the response tells it)."""

    def script(request: ChatRequest) -> ChatResult:
        assert request.stage in ("verdict", "equivalence")
        criterion = criterion_of(request) if request.stage == "verdict" else "equivalent"
        response = response_of(request)
        if persuaded is not None and persuaded(response):
            decision = True
        elif is_canary(criterion):
            decision = False
        else:
            decision = decide(response, criterion)
        if isinstance(decision, str):
            return ChatResult(text=decision, model="judge", prompt_tokens=10, completion_tokens=1)
        return ChatResult(
            text="yes" if decision else "no",
            model="judge",
            prompt_tokens=10,
            completion_tokens=1,
            top_logprobs=yes_no_logprobs(p if decision else 1 - p),
        )

    return script


def roles(anchor=None, judge=None) -> tuple[Roles, ScriptedLLM, ScriptedLLM]:
    a = ScriptedLLM(anchor or anchor_script(), role="anchor", model="anchor-model")
    j = ScriptedLLM(judge or judge_script(lambda r, c: True), role="judge", model="judge-model")
    return Roles(anchor=a, judge=j), a, j
