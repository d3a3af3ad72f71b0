"""`cat-reward score` in process against the real CPU vLLM judge (SmolLM2-135M as anchor and
judge), then `cat-reward select` on its output. SmolLM2 grades poorly: this checks the plumbing
and the bookkeeping (every group once, in the output or the failures file, rewards in range,
the rubric ids), never the rewards' quality."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cat_reward import local_judge

pytestmark = pytest.mark.e2e

ROWS = [
    {"id": "given", "prompt": "What is 7 x 8?", "rollouts": ["7 x 8 = \\boxed{56}.", "\\boxed{54}"], "mode": "verifiable",
     "reference": "56"},
    {"id": "supplied", "prompt": "How do I treat a mild headache?",
     "rollouts": ["Drink water and rest.", "Take ten pills at once."],
     "rubric": [{"criterion": "Suggests drinking water or resting", "points": 2}, {"criterion": "Recommends an unsafe dose", "points": -3}]},
    {"id": "anchor", "prompt": "Why is the sky blue? One sentence.",
     "rollouts": ["Air scatters blue light more than red light.", "Because the ocean reflects onto it."]},
]


def test_score_then_select_with_the_real_judge(judge_url, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    env.update(
        CAT_ANCHOR_BASE_URL=judge_url,
        CAT_ANCHOR_MODEL=local_judge.SERVED_MODEL,
        CAT_SYNTHESIS_MAX_TOKENS="96",
        CAT_DATA_DIR=str(tmp_path / "data"),
    )
    out = tmp_path / "scored.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "cat_reward.cli", "score", str(data), "-o", str(out), "--concurrency", "3",
         "--json", str(tmp_path / "summary.json")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "3/3" in done.stderr  # the progress bar ran to the end
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    failures = [json.loads(line) for line in (tmp_path / "scored.jsonl.failures.jsonl").read_text().splitlines()]
    # Every group exactly once, scored or failed with its error; the exit code says which.
    assert sorted([e["id"] for e in scored] + [f["id"] for f in failures]) == ["anchor", "given", "supplied"]
    assert (done.returncode == 1) == bool(failures)
    assert all(f["kind"] == "group" and f["error"]["type"] and f["error"]["message"] for f in failures)
    by_id = {e["id"]: e for e in scored}
    # No anchor call for these two: math-verify against the given reference, the caller's rubric on the judge.
    assert by_id["given"]["rewards"] == [1.0, 0.0] and by_id["given"]["aggregator"] == "given"
    supplied = by_id["supplied"]
    assert supplied["aggregator"] == "none" and supplied["rubric_id"] == supplied["record_id"]
    assert supplied["provenance"]["judge_model"] == local_judge.SERVED_MODEL
    for entry in scored:
        assert len(entry["rewards"]) == 2
        for reward, error in zip(entry["rewards"], entry["errors"]):
            assert (reward is None) == (error is not None)
            assert reward is None or 0.0 <= reward <= 1.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["summary"]["groups"] == len(scored) and summary["failed_groups"] == len(failures)
    assert sum(summary["summary"]["histogram"]["counts"]) == sum(r is not None for e in scored for r in e["rewards"])

    sft = tmp_path / "sft.jsonl"
    selected = subprocess.run(
        [sys.executable, "-m", "cat_reward.cli", "select", str(out), "-o", str(sft), "--keep-top", "1"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert selected.returncode == 0, selected.stderr
    lines = [json.loads(line) for line in sft.read_text().splitlines()]
    assert len(lines) == len({json.dumps(e["prompt"]) for e in scored if any(r is not None for r in e["rewards"])})
    given = next(line for line in lines if line["id"] == "given")
    assert given["completion"] == "7 x 8 = \\boxed{56}." and given["reward"] == 1.0
