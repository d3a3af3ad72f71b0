"""Bench: CPU time of the injection detector per ~2 KB rollout (no LLM, one process).

Three kinds of 2 KB rollout, 100 of each (seeded), and the load test's own rollouts:
  loadtest   the load test's rollouts (``cat-reward loadtest``: words of a worked answer)
  english    honest English answers from tests/adversarial/*benign.jsonl that are plain ASCII, joined
  corpus     every benign text of tests/adversarial (English, code, JSON, and other languages), joined
  loadtest_groups  512 rollouts (64 groups of 8) from the load test's own generator (``make_groups``
             with its default lengths, log-normal, median ~1.6 KB, seed 7; "chars" is their median)
Each row is the best of 5 passes (CPU time, ``time.process_time``) divided by the rollouts, for
``detect_injection(text)`` and, as the reference, ``detect_injection(text, use_hints=False)``
(every pattern run in full, no prefilter). To compare two versions of the code, run it with
PYTHONPATH pointing at each one's ``service/`` and a different --label:

    PYTHONPATH=service .venv/bin/python bench/detector_speed.py --label after --json bench/results/detector_speed.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from tqdm import tqdm

from cat_reward.engine.injection import detect_injection
from cat_reward.loadtest.runner import WORDS, make_groups

from common import ROOT, machine, table

SIZE = 2048
COUNT = 100
PASSES = 5


def _joined(pieces: list[str], rng: random.Random) -> str:
    text = ""
    while len(text) < SIZE:
        text += rng.choice(pieces) + "\n\n"
    return text[:SIZE]


def rollouts() -> dict[str, list[str]]:
    folder = ROOT / "tests" / "adversarial"
    benign = [json.loads(line)["text"] for path in sorted(folder.glob("*benign.jsonl"))
              for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    english = [t for t in benign if t.isascii()]
    rng = random.Random(16)
    return {
        "loadtest": [" ".join(rng.choice(WORDS) for _ in range(SIZE // 4))[:SIZE] for _ in range(COUNT)],
        "english": [_joined(english, rng) for _ in range(COUNT)],
        "corpus": [_joined(benign, rng) for _ in range(COUNT)],
        "loadtest_groups": [rollout for group in make_groups(argparse.Namespace(
            groups=64, group_size=8, rollout_median_tokens=400, rollout_sigma=0.6, seed=7, criteria=8), "x")
            for rollout in group["rollouts"]],
    }


def per_rollout_ms(texts: list[str], **kwargs) -> float:
    for text in texts[:5]:  # warm the caches (confusables table, compiled patterns)
        detect_injection(text, **kwargs)
    best = float("inf")
    for _ in range(PASSES):
        started = time.process_time()
        for text in texts:
            detect_injection(text, **kwargs)
        best = min(best, time.process_time() - started)
    return round(1000 * best / len(texts), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", default="current", help="the name of the code measured (a row label)")
    parser.add_argument("--json", type=Path, help="append this run to a JSON file (a list of runs)")
    args = parser.parse_args()
    sets = rollouts()
    rows, runs = [], []
    for name, texts in tqdm(sets.items(), desc="rollout sets"):
        with_prefilters = per_rollout_ms(texts)
        reference = per_rollout_ms(texts, use_hints=False)
        rows.append([args.label, name, with_prefilters, reference])
        runs.append({"label": args.label, "set": name, "rollouts": len(texts), "chars": int(statistics.median(map(len, texts))),
                     "ms_per_rollout": with_prefilters, "ms_per_rollout_no_prefilters": reference})
    print(table(["code", "rollouts", "ms/rollout", "ms/rollout, every pattern in full"], rows))
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.exists() else {"runs": []}
        calibration = machine()["calibration_ms"]
        old["runs"] = [r for r in old["runs"] if r["label"] != args.label] + [
            {**r, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "calibration_ms": calibration} for r in runs]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(old, indent=2) + "\n")


if __name__ == "__main__":
    main()
