"""Shared fixtures of the client tests: the anyio backend, a sleep recorder, canned answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cat_reward_client import _async_client, _client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace the clients' waits between retries by a recorder of the delays asked for."""
    delays: list[float] = []

    def fake_sleep(seconds: float) -> None:
        delays.append(seconds)

    async def fake_async_sleep(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(_client, "_sleep", fake_sleep)
    monkeypatch.setattr(_async_client, "_sleep", fake_async_sleep)
    return delays


def make_reward_body(rewards: list[float | None] | None = None) -> dict[str, Any]:
    """A POST /rewards answer shaped like the server's RewardResponse."""
    rewards = [1.0, 0.0, None] if rewards is None else rewards
    details = []
    for i, reward in enumerate(rewards):
        met = None if reward is None else reward > 0.5
        details.append(
            {
                "index": i,
                "reward": reward,
                "verdicts": [
                    {"criterion_id": "c1", "met": met, "p_yes": 0.9 if met else None, "raw": "yes" if met else "no",
                     "attempts": 1 if met is not None else 3, "error": None if met is not None else "verdict_unparseable"}
                ],
                "extracted_answer": None,
                "extractor": None,
                "flags": [],
                "error": None if reward is not None else "verdict_failed: c1",
            }
        )
    return {
        "rewards": rewards,
        "mode": "rubric",
        "aggregator": "synthesis",
        "reference": "The answer is 42.",
        "reference_answer": None,
        "reference_details": {"rubric": {"attempts": 1, "structured_output": False}},
        "rubric_id": "rb_0123456789abcdef01234567",
        "rubric": [{"id": "c1", "text": "States that the answer is 42.", "weight": 1.0}],
        "details": details,
        "flags": ["incomplete_rewards"] if None in rewards else [],
        "provenance": {"anchor_model": "anchor-m", "judge_model": "judge-m", "prompt_version": "cat-v1"},
        "usage": {
            "llm_calls": 4,
            "prompt_tokens": 400,
            "completion_tokens": 40,
            "latency_ms": {"reference": 10.0, "rubric": 5.0, "scoring": 20.0, "total": 35.5},
            "stages": {
                "synthesis": {"calls": 1, "prompt_tokens": 100, "completion_tokens": 20, "latency_ms": 10.0},
                "verdict": {"calls": 3, "prompt_tokens": 300, "completion_tokens": 20, "latency_ms": 20.0},
            },
        },
    }


def error_response(status: int, type_: str, message: str, *, param: str | None = None,
                   retry_after: float | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    error: dict[str, Any] = {"type": type_, "message": message}
    if param is not None:
        error["param"] = param
    if retry_after is not None:
        error["retry_after"] = retry_after
    return httpx.Response(status, json={"error": error}, headers=headers or {})


@pytest.fixture
def reward_body() -> Callable[..., dict[str, Any]]:
    return make_reward_body


@pytest.fixture
def error() -> Callable[..., httpx.Response]:
    return error_response


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


@pytest.fixture
def decode() -> Callable[[httpx.Request], Any]:
    return body_of
