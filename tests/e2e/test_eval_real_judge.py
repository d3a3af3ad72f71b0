"""`cat-reward eval` end to end with the real CPU vLLM judge (SmolLM2-135M) as policy, anchor and
judge, on the shipped fixtures. A 135M model answers mostly wrong: these tests check structure,
bookkeeping and validity, never quality.

No --seed: vLLM 0.32's CPU backend crashes its engine ("CPU Generator does not use offset") when a
seeded request's prefill is split across steps, which concurrent long prompts make happen."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from cat_reward import local_judge

pytestmark = pytest.mark.e2e
G_SIZES = [1, 2]


def run_eval(judge_url: str, tmp_path, data: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    env.update(
        CAT_ANCHOR_BASE_URL=judge_url,
        CAT_ANCHOR_MODEL=local_judge.SERVED_MODEL,
        CAT_SYNTHESIS_MAX_TOKENS="128",  # short generations keep the CPU run to about a minute
        CAT_DATA_DIR=str(tmp_path / "data"),
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "cat_reward.cli", "eval", "--data", data, "--limit", "2", "--group-sizes", "1,2",
         "--max-tokens", "96", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2/2" in done.stderr  # the progress bar ran to the end
    assert done.stdout.startswith("| G | items | errors |")
    with Image.open(out / "score_vs_G.png") as image:
        assert image.format == "PNG" and image.size == (768, 504)
    results = json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().startswith(f"# cat-reward eval: {data}")

    config = results["config"]
    assert config["items"] == 2 and config["group_sizes"] == G_SIZES
    assert config["anchor_model"] == config["judge_model"] == local_judge.SERVED_MODEL
    assert config["policy"]["model"] == local_judge.SERVED_MODEL  # the first model the server lists
    assert config["policy"]["url"] == judge_url
    assert config["policy"]["n_per_request"] is True  # vLLM honours n
    assert config["prompt_version"].startswith("cat-v1+")
    assert len(results["items"]) == 2
    for item in results["items"]:
        assert item["policy_error"] is None
        assert len(item["rollouts"]) == 2 and all(isinstance(r["text"], str) for r in item["rollouts"])
        assert [g["group_size"] for g in item["groups"]] == G_SIZES
    for row in results["summary"]["by_group_size"]:
        assert row["n_items"] + row["errors"] == 2
        assert sum(row["error_reasons"].values()) == row["errors"]
        assert row["single_sample_rollouts"] + row["single_sample_errors"] == 2 * row["n_items"]
    return results


def between(value, low=0.0, high=1.0) -> bool:
    return value is None or low <= value <= high


def test_eval_math_fixture(judge_url, tmp_path):
    results = run_eval(judge_url, tmp_path, "builtin:math")
    for item in results["items"]:
        for rollout in item["rollouts"]:
            assert rollout["correct"] in (True, False, None)
            assert rollout["correct"] is not None or rollout["error"], "an undecided rollout must say why"
        for group in item["groups"]:
            if group["error"] is not None:
                continue
            assert isinstance(group["synthesis_reference"], str)
            assert group["synthesis_no_answer"] == (group["synthesis_answer"] is None)
            assert group["majority_no_answer"] == (group["majority_answer"] is None)
            if group["synthesis_no_answer"]:
                assert group["synthesis_correct"] is False
            assert isinstance(group["majority_correct"], bool) and isinstance(group["disagrees"], bool)
    for row in results["summary"]["by_group_size"]:
        for key in ("single_sample_accuracy", "majority_accuracy", "synthesis_accuracy",
                    "synthesis_disagrees_with_majority", "synthesis_right_when_disagreeing"):
            assert between(row[key]), (key, row[key])
        assert row["synthesis_no_answer"] <= row["n_items"] and row["disagreements"] <= row["n_items"]
        assert row["synthesis_right_in_disagreements"] + row["majority_right_in_disagreements"] <= row["disagreements"]


def test_eval_healthbench_fixture(judge_url, tmp_path):
    results = run_eval(judge_url, tmp_path, "builtin:healthbench")
    for item in results["items"]:
        for rollout in item["rollouts"]:
            if rollout["score"] is None:
                assert rollout["error"], "an unscored rollout must say why"
            else:
                assert rollout["score"] <= 1.0
                assert rollout["reward"] == pytest.approx(min(1.0, max(0.0, rollout["score"])))
        for group in item["groups"]:
            if group["error"] is None:
                assert group["synthesis_reference"].strip() and group["synthesis_score"] <= 1.0
    for row in results["summary"]["by_group_size"]:
        assert between(row["single_sample_score"]) and between(row["synthesis_score"])
