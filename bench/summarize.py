"""Merge the bench results (bench/results/<bench>.json) into bench/results/summary.json and
summary.md: the headline numbers and their targets, each taken from the run that measured it.

    .venv/bin/python bench/summarize.py
"""

from __future__ import annotations

import json
import math

from common import RESULTS, table

TARGETS = {
    "decode_tokens_per_verdict": ("<=", 1.0),
    "speedup_vs_naive": (">=", 5.0),
    "service_cpu_ms_per_group": ("<=", 10.0),
    "service_rss_mb": ("<=", 300.0),
}


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _met(key: str, value) -> bool | None:
    if key not in TARGETS or value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    op, target = TARGETS[key]
    return value <= target if op == "<=" else value >= target


def summarize() -> dict:
    summary: dict = {}
    real = _load("real_judge")
    if real:
        for key in ("decode_tokens_per_verdict", "judge_requests_per_group", "batch_size", "speedup_vs_naive",
                    "speedup_vs_naive_whole_pipeline", "naive_decode_tokens_per_verdict", "speedup_vs_before",
                    "judge_requests_per_group_by_G", "judge_requests_target_by_G"):
            if key in real:
                summary[key] = real[key]
    overhead = _load("service_overhead")
    if overhead:
        summary["service_cpu_ms_per_group"] = overhead["service_cpu_ms_per_group"]
        summary["service_rss_mb"] = overhead["service_rss_mb"]
        summary["service_cpu_ms_per_group_by_concurrency"] = overhead["service_cpu_ms_per_group_by_concurrency"]
    cache = _load("cache_retry")
    if cache:
        summary["cache_retry"] = cache["summary"]
    layouts = _load("verdict_layouts")
    if layouts:
        summary["verdict_layout_kept"] = layouts["kept"]

    rows = []
    for key, value in summary.items():
        if isinstance(value, (dict, list)):
            continue
        target = TARGETS.get(key)
        if key == "judge_requests_per_group" and real:
            target = ("<=", real.get("judge_requests_target"))
            met = None if target[1] is None else value <= target[1]
        else:
            met = _met(key, value)
        rows.append([key, value, f"{target[0]} {target[1]}" if target else "", {True: "yes", False: "NO", None: ""}[met]])
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "summary.md").write_text(table(["key", "measured", "target", "met"], rows) + "\n")
    return summary


if __name__ == "__main__":
    print(json.dumps(summarize(), indent=2))
