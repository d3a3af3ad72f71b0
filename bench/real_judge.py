"""Bench (b): the real engine against the real CPU vLLM judge, side by side with a naive grader.

For G = 4, 8, 16 rollouts (bench/data/seasons.json) and n = 8 criteria:

verdict stage (the same fixed 8 criteria for every variant):
  ours     the pipeline's verdicts: single-token scores, batched /v1/completions requests
  before   the previous code path: one chat call per verdict (yes/no forced, max_tokens 3)
  naive    HealthBench-style: one chat call per (rollout, criterion) asking for a short
           explanation and a JSON verdict (bench/naive_grader.py), max_tokens 256

whole pipeline (synthesis, rubric, verdicts; seed fixed, so ours and naive get the same
reference and criteria from the anchor):
  ours     two-step synthesis and rubric, then batched single-token verdicts
  fused    synthesis and rubric in one generation (options.fused), then the same verdicts
  naive    two-step synthesis and rubric, then the naive grader

Each measured run gets its own vLLM ``cache_salt``: prefix-cache blocks are shared inside a run
(as when a group is scored), never carried over from an earlier run. Requests and tokens are
counted on the wire (usage of every /completions response).

    cat-reward judge --port 8011 &        # the real CPU judge, ready in ~40 s
    .venv/bin/python bench/real_judge.py --judge-url http://127.0.0.1:8011/v1
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
import uuid

import httpx

from cat_reward.backends.openai_compat import OpenAICompatClient
from cat_reward.engine import CaTPipeline, Group, GroupOptions, load_prompt_set
from cat_reward.engine.aggregators.synthesis import synthesize_reference
from cat_reward.engine.context import GroupContext
from cat_reward.engine.ports import EquivalenceResult, Roles
from cat_reward.engine.self_proposed_rubrics import propose_rubric
from cat_reward.engine.types import Criterion, Sampling

import naive_grader
from common import CountingTransport, auc, load_data, table, write_results
from summarize import summarize

N = 8


class NoChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(None, "unused")


def accuracy(pairs: list[tuple[bool | None, bool | None]]) -> float | None:
    usable = [(m, t) for m, t in pairs if m is not None and t is not None]
    return sum(m == t for m, t in usable) / len(usable) if usable else None


class Bench:
    def __init__(self, url: str, model: str, batch_size: int) -> None:
        self.transport = CountingTransport()
        self.http = httpx.AsyncClient(transport=self.transport, timeout=httpx.Timeout(900, connect=10))
        common = dict(model=model, base_urls=[url], http=self.http, kind="auto")
        self.anchor = OpenAICompatClient(role="anchor", yes_no_scoring=False, **common)
        self.judge = OpenAICompatClient(role="judge", score_batch_size=batch_size, **common)
        self.chat_judge = OpenAICompatClient(role="judge", yes_no_scoring=False, **common)
        prompts = load_prompt_set()
        self.ours = CaTPipeline(Roles(self.anchor, self.judge), prompts, NoChecker())
        self.before = CaTPipeline(Roles(self.anchor, self.chat_judge), prompts, NoChecker())
        self.prompts = prompts

    async def measured(self, coro_factory):
        self.transport.salt = uuid.uuid4().hex
        before = self.transport.tally.snapshot()
        started = time.perf_counter()
        result = await coro_factory()
        wall = time.perf_counter() - started
        self.transport.salt = None
        return result, wall, self.transport.tally.since(before)


def verdict_group(data: dict, G: int) -> Group:
    rubric = tuple(Criterion(id=f"s{i + 1}", text=c, source="caller") for i, c in enumerate(data["criteria"][:N]))
    options = GroupOptions(aggregator="none", rubric_source="supplied", use_cache=False)
    return Group(prompt=data["prompt"], rollouts=data["rollouts"][:G], mode="rubric", options=options, rubric=rubric)


def whole_options(fused: bool = False) -> GroupOptions:
    sampling = Sampling(temperature=0.7, top_p=0.95, max_tokens=256)
    return GroupOptions(
        seed=1234, synthesis=sampling, rubric=sampling, use_cache=False, fused=fused, min_criteria=N, max_criteria=N
    )


def row(name: str, stage: str, G: int, wall: float, wire: dict, verdicts: int, extra: dict | None = None) -> dict:
    return {
        "variant": name,
        "stage": stage,
        "G": G,
        "n": N,
        "wall_s": wall,
        "llm_requests": wire["requests"],
        "prompts_sent": wire["prompts"],
        "prompt_tokens": wire["prompt_tokens"],
        "decode_tokens": wire["decode_tokens"],
        "verdicts": verdicts,
        "decode_tokens_per_verdict": wire["decode_tokens"] / verdicts if stage == "verdict" and verdicts else None,
        **(extra or {}),
    }


async def verdict_stage(bench: Bench, data: dict, G: int, repeats: int) -> list[dict]:
    truth = [row_[:N] for row_ in data["truth"][:G]]
    rows = []
    group = verdict_group(data, G)
    seen = {}
    for name, pipeline in (("ours", bench.ours), ("before", bench.before)):
        runs = [await bench.measured(lambda p=pipeline: p.score(group)) for _ in range(repeats)]
        walls = [w for _, w, _ in runs]
        outcome, wall, wire = sorted(runs, key=lambda run: run[1])[len(runs) // 2]  # the median run
        verdicts = [v for ro in outcome.rollouts for v in ro.verdicts]
        seen[name] = verdicts
        pairs = [(v.p_yes, truth[i // N][i % N]) for i, v in enumerate(verdicts)]
        extra = {
            "auc_p_yes": auc(pairs),
            "accuracy_met": accuracy([(v.met, truth[i // N][i % N]) for i, v in enumerate(verdicts)]),
            "unparsed": sum(v.met is None for v in verdicts),
            "judge_requests": wire["by_path"].get("/v1/completions", 0) if name == "ours" else wire["requests"],
            "wall_s_runs": walls,
        }
        rows.append(row(name, "verdict", G, wall, wire, len(verdicts), extra))
        print(rows[-1], flush=True)
    # Same prompts, same allowed answers: the single-token verdicts should equal the chat path's.
    ours_v, before_v = seen["ours"], seen["before"]
    rows[0]["same_met_as_chat_path"] = sum(a.met == b.met for a, b in zip(ours_v, before_v)) / len(ours_v)
    rows[0]["max_abs_p_yes_diff_vs_chat_path"] = max(
        abs(a.p_yes - b.p_yes) for a, b in zip(ours_v, before_v) if a.p_yes is not None and b.p_yes is not None
    )
    graded, wall, wire = await bench.measured(
        lambda: naive_grader.grade(
            bench.chat_judge, data["prompt"], data["rollouts"][:G], data["criteria"][:N], attempts=bench.naive_attempts
        )
    )
    flat = [g for r in graded for g in r]
    extra = {
        "auc_p_yes": None,
        "accuracy_met": accuracy([(g["met"], truth[i // N][i % N]) for i, g in enumerate(flat)]),
        "unparsed": sum(g["met"] is None for g in flat),
        "judge_requests": wire["requests"],
    }
    rows.append(row("naive", "verdict", G, wall, wire, len(flat), extra))
    print(rows[-1], flush=True)
    return rows


async def naive_whole(bench: Bench, data: dict, G: int) -> dict:
    group = Group(prompt=data["prompt"], rollouts=data["rollouts"][:G], mode="rubric", options=whole_options())
    ctx = GroupContext(group=group, roles=Roles(bench.anchor, bench.chat_judge), prompts=bench.prompts, checker=NoChecker())
    reference = await synthesize_reference(ctx)
    rubric, _ = await propose_rubric(ctx, reference)
    graded = await naive_grader.grade(
        bench.chat_judge, data["prompt"], group.rollouts, [c.text for c in rubric], attempts=bench.naive_attempts
    )
    return {"criteria": len(rubric), "verdicts": sum(len(r) for r in graded), "graded": graded}


async def whole_pipeline(bench: Bench, data: dict, G: int) -> list[dict]:
    rows = []
    for name, fused in (("ours", False), ("fused", True)):
        group = Group(prompt=data["prompt"], rollouts=data["rollouts"][:G], mode="rubric", options=whole_options(fused))
        outcome, wall, wire = await bench.measured(lambda g=group: bench.ours.score(g))
        verdicts = sum(len(ro.verdicts) for ro in outcome.rollouts)
        phases = outcome.usage.phases
        extra = {"criteria": len(outcome.rubric), "verdict_stage_s": phases.get("scoring"),
                 "reference_stage_s": phases.get("reference")}
        rows.append(row(name, "whole", G, wall, wire, verdicts, extra))
        print(rows[-1], flush=True)
    result, wall, wire = await bench.measured(lambda: naive_whole(bench, data, G))
    rows.append(row("naive", "whole", G, wall, wire, result["verdicts"], {"criteria": result["criteria"]}))
    print(rows[-1], flush=True)
    return rows


async def run(args) -> dict:
    data = load_data()
    model = args.model
    if model is None:
        model = httpx.get(f"{args.judge_url}/models", timeout=10).json()["data"][0]["id"]
    bench = Bench(args.judge_url, model, args.batch_size)
    bench.naive_attempts = args.naive_attempts
    # Warm-up, not measured: capability probes, chat template, grammar compilation, first requests.
    await bench.ours.score(verdict_group(data, 2))
    await bench.before.score(verdict_group(data, 1))
    await naive_grader.grade(bench.chat_judge, data["prompt"], data["rollouts"][:1], data["criteria"][:2])
    warm = Group(prompt=data["prompt"], rollouts=data["rollouts"][:2], mode="rubric", options=whole_options(True))
    await bench.ours.score(warm)
    rows = []
    for G in args.G:
        rows += await verdict_stage(bench, data, G, args.repeats)
        if not args.skip_whole:
            rows += await whole_pipeline(bench, data, G)
    await bench.http.aclose()
    return {"model": model, "judge_url": args.judge_url, "batch_size": args.batch_size, "repeats": args.repeats,
            "naive_attempts": args.naive_attempts, "rows": rows}


def pick(rows, variant, stage, G):
    for r in rows:
        if (r["variant"], r["stage"], r["G"]) == (variant, stage, G):
            return r
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge-url", default="http://127.0.0.1:8011/v1")
    parser.add_argument("--model", default=None, help="default: the first model the judge serves")
    parser.add_argument("--G", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-whole", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="cold runs of ours/before (median kept); naive runs once")
    parser.add_argument("--naive-attempts", type=int, default=1,
                        help="calls per naive verdict when its JSON does not parse (HealthBench: unbounded)")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    rows = result["rows"]

    headers = ["stage", "G", "variant", "wall s", "LLM requests", "prompt tokens", "decode tokens", "decode tok/verdict",
               "criteria", "AUC P(yes)", "accuracy", "unparsed"]
    body = [[r["stage"], r["G"], r["variant"], r["wall_s"], r["llm_requests"], r["prompt_tokens"], r["decode_tokens"],
             r["decode_tokens_per_verdict"], r.get("criteria", N), r.get("auc_p_yes"), r.get("accuracy_met"), r.get("unparsed")]
            for r in sorted(rows, key=lambda r: (r["stage"] != "verdict", r["G"]))]
    ours8, naive8 = pick(rows, "ours", "verdict", 8), pick(rows, "naive", "verdict", 8)
    ours8w, naive8w = pick(rows, "ours", "whole", 8), pick(rows, "naive", "whole", 8)
    summary = {}
    ours_rows = [r for r in rows if r["variant"] == "ours" and r["stage"] == "verdict"]
    if ours_rows:
        summary["decode_tokens_per_verdict"] = max(r["decode_tokens_per_verdict"] for r in ours_rows)
        summary["judge_requests_per_group_by_G"] = {r["G"]: r["judge_requests"] for r in ours_rows}
        summary["judge_requests_target_by_G"] = {r["G"]: math.ceil(r["G"] * N / args.batch_size) for r in ours_rows}
    if ours8:
        summary["judge_requests_per_group"] = ours8["judge_requests"]
        summary["judge_requests_target"] = math.ceil(8 * N / args.batch_size)
    summary["batch_size"] = args.batch_size
    if ours8 and naive8:
        summary["speedup_vs_naive"] = naive8["wall_s"] / ours8["wall_s"]
        summary["naive_decode_tokens_per_verdict"] = naive8["decode_tokens_per_verdict"]
    if ours8w and naive8w:
        summary["speedup_vs_naive_whole_pipeline"] = naive8w["wall_s"] / ours8w["wall_s"]
    before8 = pick(rows, "before", "verdict", 8)
    if ours8 and before8:
        summary["speedup_vs_before"] = before8["wall_s"] / ours8["wall_s"]
    speedups = []
    for G in args.G:
        o, nv, b = pick(rows, "ours", "verdict", G), pick(rows, "naive", "verdict", G), pick(rows, "before", "verdict", G)
        ow, nw, fw = pick(rows, "ours", "whole", G), pick(rows, "naive", "whole", G), pick(rows, "fused", "whole", G)
        speedups.append([G, nv and o and nv["wall_s"] / o["wall_s"], b and o and b["wall_s"] / o["wall_s"],
                         nw and ow and nw["wall_s"] / ow["wall_s"], fw and ow and ow["wall_s"] / fw["wall_s"]])
    markdown = "\n".join([
        f"### Real CPU judge ({result['model']}, vLLM on 2 cores), n = {N} criteria, verdict batch size {args.batch_size}",
        "",
        f"Verdict stage: ours and before are the median of {args.repeats} cold runs, naive one run "
        f"({args.naive_attempts} call(s) per verdict at most). Whole pipeline: one run each.",
        "",
        table(headers, body),
        "",
        table(["G", "verdict stage: naive / ours", "verdict stage: before / ours", "whole pipeline: naive / ours",
               "whole pipeline: ours / fused"], speedups),
        "",
        "AUC P(yes) and accuracy: against the hand labels in bench/data/seasons.json (verdict stage, fixed "
        "criteria). SmolLM2-135M is a plumbing model: these say the signal survives the layout, not that it grades well.",
    ])
    write_results("real_judge", {**summary, **result}, markdown)
    summarize()  # bench/results/summary.{json,md}


if __name__ == "__main__":
    main()
