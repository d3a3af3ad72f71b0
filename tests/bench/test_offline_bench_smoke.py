"""Smoke test of bench/offline_score.py: the stub, `cat-reward score` in process and through a
real `cat-reward serve`, and the rerun, on a handful of groups, results in a temporary folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _batch_size() -> int:
    from cat_reward.settings import Settings

    return Settings.model_fields["verdict_batch_size"].default


def test_offline_score_bench_runs_and_reports(tmp_path):
    env = {**os.environ, "CAT_BENCH_RESULTS": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "offline_score.py", "--groups", "12", "--concurrency", "4"],
        cwd=ROOT / "bench", env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((tmp_path / "offline_score.json").read_text())
    assert result["groups"] == 12 and result["concurrency"] == 4
    runs = result["results"]
    assert runs["in_process"]["groups_scored"] == runs["url"]["groups_scored"] == 12
    assert runs["rerun"]["groups_scored"] == 0 and runs["rerun"]["already_done"] == 12
    for name in ("in_process", "url"):
        assert runs[name]["failed"] == 0 and runs[name]["null_rewards"] == 0 and runs[name]["groups_per_s"] > 0
        # Against the stub (detected as vLLM): 2 anchor chat calls per group, and its 72 verdict prompts
        # (G = 8 x (8 criteria + the hacking canary)) in batched requests of at most the default batch size
        # (128): at least 72/128 requests per group when groups share full batches, at most 2 when a batch
        # boundary splits a group.
        assert runs[name]["chat_requests_per_group"] == 2
        assert 72 / _batch_size() <= runs[name]["judge_requests_per_group"] <= 2
    assert runs["url"]["service_cpu_s"] > 0
    assert (tmp_path / "offline_score.md").read_text().startswith("### Offline scoring")
