"""Single judge vs a verdict ensemble: does averaging P(yes) over k judges raise agreement with
labels, and what does it cost?

Runs `cat-reward judge-quality`'s harness in process against a judge (default: the CPU vLLM
judge), on the shipped labelled sets (or --pointwise/--pairwise files):

    pointwise  one run with the judge alone and one with the ensemble (cost measured separately);
               the ensemble run also gives each member alone, on the same items
    pairwise   one ensemble run (synthesis and rubric are sampled, so separate runs would differ in
               rubric too): the ensemble and each member alone, scored on the same rubric

Default ensemble: the judge with its three verdict prompt paraphrases (verdict, verdict_p1,
verdict_p2). With other endpoints or models, set CAT_EXTRA_JUDGES and pass --ensemble.

    .venv/bin/python bench/judge_ensemble.py --judge-url http://127.0.0.1:8011/v1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from common import table, write_results

DEFAULT_ENSEMBLE = "judge/verdict,judge/verdict_p1,judge/verdict_p2"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge-url", default="http://127.0.0.1:8011/v1")
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--ensemble", default=DEFAULT_ENSEMBLE)
    parser.add_argument("--pointwise", default="builtin:pointwise")
    parser.add_argument("--pairwise", default="builtin:pairwise")
    parser.add_argument("--pairwise-limit", type=int, default=None, help="the first N pairs (default: all)")
    parser.add_argument("--no-pairwise", action="store_true")
    parser.add_argument("--synthesis-max-tokens", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--name", default="judge_ensemble")
    return parser.parse_args()


async def main() -> int:
    args = parse()
    os.environ["CAT_ANCHOR_BASE_URL"] = args.judge_url
    os.environ["CAT_ANCHOR_MODEL"] = args.model
    from cat_reward.engine.types import EnsembleMember
    from cat_reward.evaluation import judge_quality as jq
    from cat_reward.settings import Settings

    settings = Settings(cache_enabled=False)
    members = tuple(EnsembleMember(*m.split("/")) for m in args.ensemble.split(","))
    single = (members[0],)
    point = jq.load(args.pointwise)
    runs = {}
    for label, ensemble in (("single", single), ("ensemble", members)):
        options = jq.HarnessOptions(aggregations=("fraction", "soft"), ensemble=ensemble, concurrency=args.concurrency)
        started = time.perf_counter()
        report = await jq.run([point], settings, options, progress=sys.stderr.isatty())
        runs[label] = {"summary": report["sections"][0]["summary"], "wall_s": round(time.perf_counter() - started, 2)}
        print(f"pointwise {label}: done in {runs[label]['wall_s']} s", file=sys.stderr)
    pairwise = None
    if not args.no_pairwise:
        data = jq.load(args.pairwise, args.pairwise_limit)
        options = jq.HarnessOptions(
            aggregations=("fraction", "soft"), ensemble=members, concurrency=args.concurrency,
            synthesis_max_tokens=args.synthesis_max_tokens,
        )
        started = time.perf_counter()
        report = await jq.run([data], settings, options, progress=sys.stderr.isatty())
        pairwise = {"summary": report["sections"][0]["summary"], "wall_s": round(time.perf_counter() - started, 2)}

    rows = []
    for label in ("single", "ensemble"):
        s, cost = runs[label]["summary"], runs[label]["summary"]["cost"]
        rows.append([
            f"{label} ({', '.join(m.name for m in (single if label == 'single' else members))})",
            s["accuracy"], s["auc"], s["ece"], s["mean_spread"], cost["judge_tokens_per_item"], cost["wall_s_total"],
        ])
    for name, m in runs["ensemble"]["summary"].get("members", {}).items():
        rows.append([f"{name} alone (from the ensemble run)", m["accuracy"], m["auc"], m["ece"], None, None, None])
    md = [
        f"### Single judge vs verdict ensemble ({args.model})",
        "",
        f"Pointwise, {runs['single']['summary']['scored']} labelled verdicts ({args.pointwise}):",
        "",
        table(["judge", "accuracy", "AUC P(yes)", "ECE", "mean spread", "judge tokens/item", "wall s (all items)"], rows),
    ]
    if pairwise is not None:
        s = pairwise["summary"]
        prow = [["ensemble", s["modes"]["fraction"]["accuracy"], s["modes"]["fraction"]["ties"],
                 s["modes"]["soft"]["accuracy"], s["modes"]["soft"]["ties"]]]
        for name, m in s.get("members", {}).items():
            prow.append([f"{name} alone", m["fraction"]["accuracy"], m["fraction"]["ties"], m["soft"]["accuracy"], m["soft"]["ties"]])
        md += [
            "",
            f"Pairwise, {s['scored']} of {s['items']} pairs scored ({args.pairwise}), same rubric for every row; "
            f"judge tokens per pair {s['cost']['judge_tokens_per_item']}, anchor tokens {s['cost']['anchor_tokens_per_item']}, "
            f"{pairwise['wall_s']} s for all:",
            "",
            table(["verdicts", "fraction: accuracy", "ties", "soft: accuracy", "ties"], prow),
        ]
    write_results(args.name, {"pointwise": runs, "pairwise": pairwise, "ensemble": args.ensemble, "model": args.model}, "\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
