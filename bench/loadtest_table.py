"""The markdown table of bench/README.md's step-sized load test, from bench/results/loadtest*.json.
A report made with ``--repeats`` shows its median run (by service CPU) and, beside its CPU
figures, the range over every run; its failed groups count every run.

    .venv/bin/python bench/loadtest_table.py [FILES...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
HEADERS = ["file", "configuration", "M judges", "step s", "ratio vs 1 judge", "groups/s", "judge busy", "prefix hit",
           "p50 s", "p99 s", "service CPU ms/group", "CPU % of step", "failed groups", "errors", "timeouts"]


def _with_range(run: dict, name: str, scale: float, unit: str = "") -> str:
    """The row's figure; with ``--repeats``, every run's range after it (the row is the median run)."""
    text = f"{scale * run[name]:.1f}{unit}"
    values = (run.get("spread") or {}).get(name)
    if values:
        text += f" ({scale * min(values):.1f}-{scale * max(values):.1f}{unit}, {len(values)} runs)"
    return text


def rows(path: Path) -> list[list[str]]:
    report = json.loads(path.read_text())
    out = []
    several = len(report["runs"]) > 1 and report["runs"][0]["judges"] == 1
    for run in report["runs"]:
        out.append([
            path.name, report["label"], str(run["judges"]), f"{run['step_wall_s']:.1f}",
            f"{run['step_ratio_vs_first']:.3f}" if several else "", f"{run['groups_per_s']:.2f}",
            f"{run['judge_busy_fraction']:.2f}" if run["judge_busy_fraction"] is not None else "",
            f"{100 * run['prefix_hit_rate']:.1f}%" if run["prefix_hit_rate"] is not None else "",
            f"{run['p50_group_s']:.1f}", f"{run['p99_group_s']:.1f}", _with_range(run, "service_cpu_ms_per_group", 1),
            _with_range(run, "service_cpu_share_of_step", 100, "%"), str(run.get("failed_groups_all_runs", run["failed_groups"])),
            str(sum(run["errors"].values())), str(run["timeouts"]),
        ])
    return out


def main() -> None:
    files = [Path(a) for a in sys.argv[1:]] or sorted(RESULTS.glob("loadtest*.json"))
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + " --- |" * len(HEADERS))
    for path in files:
        for row in rows(path):
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
