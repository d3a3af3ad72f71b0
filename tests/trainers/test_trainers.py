"""The REAL trainers, in their own venv (scripts/trainer-env), against the real service and the
real CPU vLLM judge: TRL's GRPOTrainer trains two steps with cat-reward as its reward function,
and verl 0.9.1's reward loop scores rollouts grouped by uid through cat-reward."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from .conftest import run_in_trainer_venv

pytestmark = pytest.mark.trainers


def records(url: str, **filters) -> list[dict]:
    """The service's audit history (GET /rubrics), every page."""
    items, cursor = [], None
    while True:
        page = httpx.get(f"{url}/rubrics", params={**filters, "limit": 500, **({"cursor": cursor} if cursor else {})},
                         timeout=30).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def test_trl_grpo_trains_with_cat_rewards(trainer_python, policy_dir, trainer_service, tmp_path):
    url, _ = trainer_service
    out = tmp_path / "trl.json"
    run_in_trainer_venv(trainer_python, "run_trl.py", policy_dir, url, str(out), log=tmp_path / "trl.log", timeout_s=900)
    result = json.loads(out.read_text())

    # The reward function ran once per step, on the whole batch: 2 prompts x 2 generations.
    calls = result["calls"]
    assert [c["step"] for c in calls] == [0, 1]
    for call in calls:
        assert call["n_prompts"] == 4 and len(call["completions"]) == 4
        assert len(call["rewards"]) == 4
        assert all(r is not None and 0.0 <= r <= 1.0 for r in call["rewards"]), call

    # The trainer logged the rewards it got, step by step, and our metrics with them.
    steps = [entry for entry in result["log_history"] if "reward" in entry]
    assert len(steps) == 2
    for entry, call in zip(steps, calls):
        assert math.isclose(float(entry["rewards/cat_reward/mean"]), sum(call["rewards"]) / 4, rel_tol=1e-4)
        assert float(entry["cat/null_rewards"]) == 0.0 and float(entry["cat/failed_groups"]) == 0.0
        assert math.isfinite(float(entry["grad_norm"]))
    # GRPO learns only from rewards that differ within a group; when some did, the policy moved.
    varied = any(c["rewards"][i] != c["rewards"][i + 1] for c in calls for i in (0, 2))
    if varied:
        assert result["changed_tensors"] > 0

    # The service scored whole groups (POST /rewards/batch): 2 groups of 2 per step, with their step.
    run_records = [r for r in records(url) if (r["run_id"] or "").startswith("trainers-test-")]
    assert sorted(r["step"] for r in run_records) == [0, 0, 1, 1]
    assert all(len(r["rewards"]) == 2 for r in run_records)


def test_verl_reward_loop_groups_by_uid(trainer_python, policy_dir, trainer_service, tmp_path):
    url, _ = trainer_service
    out = tmp_path / "verl.json"
    run_in_trainer_venv(trainer_python, "run_verl.py", policy_dir, url, str(out), log=tmp_path / "verl.log", timeout_s=600)
    result = json.loads(out.read_text())

    assert result["manager"] == "CatRewardLoopManager"  # resolved by verl from the importlib config keys
    for sample in result["reward_loop"]:
        assert 0.0 <= sample["reward_score"] <= 1.0
        assert sample["reward_extra_info"]["score"] == sample["reward_score"]
        assert sample["reward_extra_info"]["cat_group_scored"] == 2
        assert sample["reward_extra_info"]["cat_partial_group"] == 0.0

    # One scored group per uid, holding that uid's two rollouts (the samples came one per call).
    uids = sorted(set(result["uids"]))
    by_group = {}
    for record in records(url):
        if record["group_id"] in uids:
            by_group.setdefault(record["group_id"], []).append(record)
    assert sorted(by_group) == uids
    assert all(len(recs) >= 1 and all(len(r["rewards"]) == 2 for r in recs) for recs in by_group.values())

    # The legacy group-aware manager put each score on the last response token.
    assert all(0.0 <= s <= 1.0 for s in result["legacy_scores"])
    # the same groups, one per request and the requests concurrent: the same scores (cached), in place
    assert result["legacy_split_scores"] == result["legacy_scores"]
    assert result["legacy_nonzero_at"] == [
        (n - 1) if s else None for n, s in zip(result["response_lengths"], result["legacy_scores"])
    ]
