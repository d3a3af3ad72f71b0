"""Smoke test of bench/service_overhead.py: the stub, a real `cat-reward serve` and the load
driver, with a handful of groups, results written to a temporary folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _batch_size() -> int:
    from cat_reward.settings import Settings

    return Settings.model_fields["verdict_batch_size"].default


def test_service_overhead_bench_runs_and_reports(tmp_path):
    env = {**os.environ, "CAT_BENCH_RESULTS": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "service_overhead.py", "--groups-per-level", "4,8,16", "--warmup", "2"],
        cwd=ROOT / "bench", env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads((tmp_path / "service_overhead.json").read_text())
    assert [lv["concurrency"] for lv in result["levels"]] == [1, 8, 64]
    for level in result["levels"]:
        assert level["failures"] == 0
        # Against the stub (detected as vLLM): 2 anchor chat calls and batched verdict requests: G = 8
        # rollouts x (n = 8 criteria + the hacking canary) = 72 prompts, in batches of at most the default
        # batch size (128): at least 72/128 requests per group when concurrent groups share full batches,
        # at most 2 when a batch boundary splits a group.
        assert level["chat_requests_per_group"] == 2
        assert 72 / _batch_size() <= level["judge_requests_per_group"] <= 2
        assert level["cpu_ms_per_group"] > 0 and level["rss_mb"] > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["service_rss_mb"] == result["levels"][-1]["rss_mb"]
    assert (tmp_path / "service_overhead.md").read_text().startswith("### Service overhead")
