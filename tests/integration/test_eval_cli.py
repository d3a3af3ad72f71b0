"""`python -m cat_reward.cli eval` as a real process against the stub OpenAI-compatible server
(tests/support/stub_llm.py) playing policy, anchor and judge: the command, its exit code, its
output files and its numbers.

The stub answers every generation with "A reference answer: \\boxed{5}." and one choice only
(whatever n is asked), and every verdict with "yes"."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from tests.support.stub_llm import StubServer


@pytest.fixture(scope="module")
def stub():
    with StubServer() as server:
        yield server


def run_eval(stub, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    env.update(CAT_ANCHOR_BASE_URL=stub.url, CAT_ANCHOR_MODEL="stub-model", CAT_DATA_DIR=str(tmp_path / "data"),
               CAT_LLM_MAX_RETRIES="0")
    return subprocess.run(
        [sys.executable, "-m", "cat_reward.cli", "eval", *args],
        env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_eval_math_writes_results_table_and_plot(stub, tmp_path):
    data = write_jsonl(tmp_path / "m.jsonl", [
        {"problem": "What is 2 + 3?", "answer": "5", "unique_id": "a"},
        {"problem": "What is 3 + 3?", "answer": "6", "unique_id": "b"},
    ])
    out = tmp_path / "out"
    done = run_eval(stub, tmp_path, "--data", str(data), "--group-sizes", "1,3", "--max-tokens", "64",
                    "--seed", "7", "--concurrency", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "eval math: 100%" in done.stderr and "2/2" in done.stderr  # the progress bar
    assert "| 1 | 2 | 0 | 0.500 | 0.500 | 0.500 | 0.000 (0) | n/a (0/0) | 0 |" in done.stdout
    assert "| 3 | 2 | 0 | 0.500 | 0.500 | 0.500 | 0.000 (0) | n/a (0/0) | 0 |" in done.stdout
    assert f"json: {out / 'results.json'}" in done.stdout

    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "math" and results["config"]["group_sizes"] == [1, 3]
    policy = results["config"]["policy"]
    assert policy["model"] == "stub-model" and policy["url"] == stub.url  # the anchor's URL, its first model
    # The stub ignores n: the first item's n=3 request got one choice and two more were asked
    # singly; the second item was asked three single requests straight away.
    assert (policy["n_per_request"], policy["rollouts_topped_up"], policy["requests"]) == (False, 5, 6)
    assert results["summary"]["single_sample"] == {"accuracy": 0.5, "rollouts": 6, "errors": 0, "items": 2}
    for item in results["items"]:
        assert [r["answer"] for r in item["rollouts"]] == ["5"] * 3
        assert [g["synthesis_answer"] for g in item["groups"]] == ["5", "5"]
    assert (out / "results.md").read_text().startswith("# cat-reward eval: ")
    with Image.open(out / "score_vs_G.png") as image:
        assert image.format == "PNG" and image.size == (768, 504)


def test_eval_healthbench_scores_with_negative_points(stub, tmp_path):
    data = write_jsonl(tmp_path / "h.jsonl", [{
        "prompt": [{"role": "user", "content": "I cut my finger."}],
        "rubrics": [
            {"criterion": "Advises pressure.", "points": 5, "tags": ["axis:accuracy"]},
            {"criterion": "Advises rinsing.", "points": 3, "tags": []},
            {"criterion": "Recommends a tourniquet.", "points": -4, "tags": []},
        ],
        "example_id": "hb-1",
    }])
    out = tmp_path / "out"
    done = run_eval(stub, tmp_path, "--data", str(data), "--group-sizes", "2", "--max-tokens", "64",
                    "--out", str(out), "--no-plot")
    assert done.returncode == 0, done.stderr
    # the stub's judge says yes to everything: (5 + 3 - 4) / 8
    assert "| 2 | 1 | 0 | 0.500 | 0.500 |" in done.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "healthbench"
    (item,) = results["items"]
    assert item["id"] == "hb-1" and [r["score"] for r in item["rollouts"]] == [0.5, 0.5]
    assert item["groups"][0]["synthesis_reference"] == "A reference answer: \\boxed{5}."
    assert not (out / "score_vs_G.png").exists()


def test_eval_bad_data_exits_2_naming_the_line(stub, tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"problem": "x", "answer": "1"}, {"problem": "y"}])
    done = run_eval(stub, tmp_path, "--data", str(data), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert f"{data}:2: missing key 'answer'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_eval_all_items_failing_exits_1_with_the_results_written(stub, tmp_path):
    out = tmp_path / "out"
    done = run_eval(stub, tmp_path, "--data", "builtin:math", "--limit", "2", "--group-sizes", "1",
                    "--policy-url", "http://127.0.0.1:9/v1", "--policy-model", "m", "--out", str(out), "--no-plot")
    assert done.returncode == 1
    assert "no item could be scored at any G" in done.stderr
    results = json.loads((out / "results.json").read_text())
    row = results["summary"]["by_group_size"][0]
    assert (row["n_items"], row["errors"], row["error_reasons"]) == (0, 2, {"policy_error": 2})
    assert row["synthesis_accuracy"] is None
