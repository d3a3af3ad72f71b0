"""Sum a py-spy raw profile (``py-spy record -f raw``) of `cat-reward serve` by part of the group
path: each sample goes to the first part whose frames it holds, in the order below.

    .venv/bin/python bench/profile_categories.py PROFILE.txt [--json PATH]
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

PARTS = [
    ("start-up and imports", ["importlib", "_handle_fromlist", "LifespanOn", "lifespan ("]),
    ("injection detector", ["detect_injection"]),
    ("history (audit record, SQLite outbox, database)", ["HistoryStore", "Outbox", "storage/store.py", "records.py"]),
    ("LLM HTTP client (aiohttp, JSON bodies)", ["aiohttp_pool.py", "aiohttp/"]),
    ("verdict prompts, keys, cache, parsing", ["_verdicts", "judge_all", "_score_rubric", "coalescer.py", "_canaries",
                                               "openai_compat.py"]),
    ("reference and rubric (prompts, parsing)", ["_reference", "propose_rubric", "synthesize_reference", "GroupContext.anchor"]),
    ("rest of the group (fingerprint, aggregation, diagnostics, audit document, cache)", ["CaTPipeline.score",
                                                                                          "RewardService._score"]),
    ("HTTP server (uvicorn, FastAPI, validation, response)", ["httptools_impl", "starlette", "fastapi"]),
]
OTHER = "other (event loop, metrics, threads)"


def categorize(path: Path) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        name = next((part for part, marks in PARTS if any(m in stack for m in marks)), OTHER)
        counts[name] += int(n)
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--json", dest="json_path", type=Path, default=None, metavar="PATH")
    args = parser.parse_args()
    counts = categorize(args.profile)
    counts.pop(PARTS[0][0], None)  # start-up is not the step's
    total = sum(counts.values()) or 1
    shares = {name: round(n / total, 4) for name, n in sorted(counts.items(), key=lambda kv: -kv[1])}
    for name, share in shares.items():
        print(f"{100 * share:5.1f}%  {name}")
    print(f"{total} samples")
    if args.json_path:
        args.json_path.write_text(json.dumps({"samples": total, "shares": shares}, indent=1) + "\n")


if __name__ == "__main__":
    main()
