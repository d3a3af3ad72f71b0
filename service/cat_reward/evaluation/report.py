"""Turn per-item results into the report: a summary per group size, a Markdown table, the
JSON document and a PNG plot of score against G.

Everything here works on the per-item dictionaries of ``results.json`` (``MathResult.to_json``,
``HealthResult.to_json``), so a report can be recomputed from a saved run.

Bookkeeping (the same at every G):
- An item whose rollouts could not be sampled (``policy_error``), or whose majority/synthesis
  step at this G failed (``groups[].error``: an LLM error, a failed synthesis, an answer check
  that could not decide), is left out of that G's numbers and counted in ``errors`` with its
  reason in ``error_reasons``. It is never scored 0.
- A synthesis (or majority) without an extractable final answer counts as wrong, and is
  counted in ``synthesis_no_answer`` (``majority_no_answer``).
- A rollout whose correctness/score could not be computed is left out of the single-sample
  mean and counted in ``single_sample_errors``.
- Single sample at G: the mean over *all* sampled rollouts (not only the first G) of the items
  scored at that G, so it is the same population as majority and synthesis there.
- HealthBench means follow simple-evals: the mean of unclipped per-response scores, clipped to
  [0, 1].
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

SCHEMA = "cat-reward-eval/1"


def _rate(numerator: float, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _clip01(value: float | None) -> float | None:
    return None if value is None else min(1.0, max(0.0, value))


def _reason(error: str) -> str:
    return error.split(":", 1)[0].strip() or "error"


def _group(item: dict, g: int) -> dict:
    for group in item["groups"]:
        if group["group_size"] == g:
            return group
    raise KeyError(f"item {item['id']} has no result for G={g}")


def _split(items: list[dict], g: int) -> tuple[list[tuple[dict, dict]], Counter]:
    """The items scored at G (with their group result), and the reasons of the others."""
    scored, reasons = [], Counter()
    for item in items:
        if item["policy_error"] is not None:
            reasons["policy_error"] += 1
            continue
        group = _group(item, g)
        if group["error"] is not None:
            reasons[_reason(group["error"])] += 1
            continue
        scored.append((item, group))
    return scored, reasons


def _math_single(items: list[dict]) -> dict:
    decided = [r["correct"] for item in items for r in item["rollouts"] if r["correct"] is not None]
    errors = sum(r["correct"] is None for item in items for r in item["rollouts"])
    return {"accuracy": _rate(sum(decided), len(decided)), "rollouts": len(decided), "errors": errors}


def _health_single(items: list[dict]) -> dict:
    scores = [r["score"] for item in items for r in item["rollouts"] if r["score"] is not None]
    errors = sum(r["score"] is None for item in items for r in item["rollouts"])
    mean = sum(scores) / len(scores) if scores else None
    return {"score": _clip01(mean), "rollouts": len(scores), "errors": errors}


def summarize_math(items: list[dict], group_sizes: list[int]) -> dict:
    sampled = [i for i in items if i["policy_error"] is None]
    single = _math_single(sampled)
    by_g = []
    for g in group_sizes:
        scored, reasons = _split(items, g)
        n = len(scored)
        groups = [group for _, group in scored]
        disagreeing = [group for group in groups if group["disagrees"]]
        at_g_single = _math_single([item for item, _ in scored])
        by_g.append({
            "group_size": g,
            "n_items": n,
            "errors": sum(reasons.values()),
            "error_reasons": dict(sorted(reasons.items())),
            "single_sample_accuracy": at_g_single["accuracy"],
            "single_sample_rollouts": at_g_single["rollouts"],
            "single_sample_errors": at_g_single["errors"],
            "majority_accuracy": _rate(sum(bool(x["majority_correct"]) for x in groups), n),
            "majority_no_answer": sum(x["majority_no_answer"] for x in groups),
            "synthesis_accuracy": _rate(sum(bool(x["synthesis_correct"]) for x in groups), n),
            "synthesis_no_answer": sum(x["synthesis_no_answer"] for x in groups),
            "synthesis_disagrees_with_majority": _rate(len(disagreeing), n),
            "disagreements": len(disagreeing),
            "synthesis_right_when_disagreeing": _rate(sum(bool(x["synthesis_correct"]) for x in disagreeing), len(disagreeing)),
            "synthesis_right_in_disagreements": sum(bool(x["synthesis_correct"]) for x in disagreeing),
            "majority_right_in_disagreements": sum(bool(x["majority_correct"]) for x in disagreeing),
        })
    return {
        "counts": {"items": len(items), "policy_errors": len(items) - len(sampled)},
        "single_sample": {
            "accuracy": single["accuracy"], "rollouts": single["rollouts"], "errors": single["errors"], "items": len(sampled),
        },
        "by_group_size": by_g,
    }


def summarize_healthbench(items: list[dict], group_sizes: list[int]) -> dict:
    sampled = [i for i in items if i["policy_error"] is None]
    single = _health_single(sampled)
    by_g = []
    for g in group_sizes:
        scored, reasons = _split(items, g)
        n = len(scored)
        synthesis = [group["synthesis_score"] for _, group in scored]
        at_g_single = _health_single([item for item, _ in scored])
        by_g.append({
            "group_size": g,
            "n_items": n,
            "errors": sum(reasons.values()),
            "error_reasons": dict(sorted(reasons.items())),
            "single_sample_score": at_g_single["score"],
            "single_sample_rollouts": at_g_single["rollouts"],
            "single_sample_errors": at_g_single["errors"],
            "synthesis_score": _clip01(sum(synthesis) / n) if n else None,
        })
    return {
        "counts": {"items": len(items), "policy_errors": len(items) - len(sampled)},
        "single_sample": {
            "score": single["score"], "rollouts": single["rollouts"], "errors": single["errors"], "items": len(sampled),
        },
        "by_group_size": by_g,
    }


def summarize(kind: str, items: list[dict], group_sizes: list[int]) -> dict:
    if kind == "math":
        return summarize_math(items, group_sizes)
    if kind == "healthbench":
        return summarize_healthbench(items, group_sizes)
    raise ValueError(f"unknown kind {kind!r}")


def scored_anything(results: dict) -> bool:
    return any(row["n_items"] for row in results["summary"]["by_group_size"])


# --- text -----------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(results: dict) -> str:
    """The summary as a Markdown table (also printed by the CLI)."""
    rows = results["summary"]["by_group_size"]
    if results["kind"] == "math":
        lines = [
            "| G | items | errors | single sample | majority | synthesis | synthesis ≠ majority | synthesis right when ≠ | synthesis no answer |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            right = (
                f"{_f(r['synthesis_right_when_disagreeing'])} ({r['synthesis_right_in_disagreements']}/{r['disagreements']})"
                if r["disagreements"] else "n/a (0/0)"
            )
            lines.append(
                f"| {r['group_size']} | {r['n_items']} | {r['errors']} | {_f(r['single_sample_accuracy'])} "
                f"| {_f(r['majority_accuracy'])} | {_f(r['synthesis_accuracy'])} "
                f"| {_f(r['synthesis_disagrees_with_majority'])} ({r['disagreements']}) | {right} | {r['synthesis_no_answer']} |"
            )
    else:
        lines = [
            "| G | items | errors | single sample | synthesis |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            lines.append(
                f"| {r['group_size']} | {r['n_items']} | {r['errors']} | {_f(r['single_sample_score'])} | {_f(r['synthesis_score'])} |"
            )
    return "\n".join(lines)


def markdown(results: dict) -> str:
    config, summary = results["config"], results["summary"]
    policy = config["policy"]
    single = summary["single_sample"]
    metric = "accuracy" if results["kind"] == "math" else "score"
    errors = {}
    for row in summary["by_group_size"]:
        for reason, count in row["error_reasons"].items():
            errors.setdefault(reason, []).append(f"G={row['group_size']}: {count}")
    lines = [
        f"# cat-reward eval: {config['data']} ({results['kind']})",
        "",
        f"- items: {config['items']} (of {config['items_in_source']} in the source), group sizes {config['group_sizes']}",
        f"- policy: `{policy['model']}` at {policy['url']}, temperature {policy['temperature']}, "
        f"max_tokens {policy['max_tokens']}, seed {policy['seed']}",
        f"- anchor: `{config['anchor_model']}`, judge: `{config['judge_model']}`, prompts {config['prompt_version']}",
        f"- single sample over all {single['rollouts']} scored rollouts: {metric} {_f(single[metric])}"
        f" ({single['errors']} rollouts could not be scored)",
        f"- policy errors: {summary['counts']['policy_errors']}; elapsed {config['elapsed_s']:.0f} s",
        "",
        table(results),
        "",
    ]
    if errors:
        lines.append("Left out (not scored as 0): " + "; ".join(f"{k} ({', '.join(v)})" for k, v in sorted(errors.items())))
        lines.append("")
    if results["kind"] == "math":
        lines.append(
            "Single sample: the share of all sampled rollouts of the scored items whose final answer matches the gold "
            "answer. Majority and synthesis: the share of items whose majority-vote / synthesized answer matches it "
            "(no answer counts as wrong). Synthesis ≠ majority: the share of items where the two final answers differ "
            "(count in brackets); right when ≠: how often synthesis is the correct one then."
        )
    else:
        lines.append(
            "Scores as simple-evals' HealthBench: Σ points of the criteria met (negative points included) / Σ positive "
            "points per response, mean over responses clipped to [0, 1]. Single sample: all sampled rollouts of the scored "
            "items; synthesis: the anchor's reference synthesized from the first G rollouts, judged on the same rubric."
        )
    return "\n".join(lines) + "\n"


# --- plot -----------------------------------------------------------------------------------


def plot_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["summary"]["by_group_size"]
    xs = [r["group_size"] for r in rows]

    def ys(key: str) -> list[float]:
        return [math.nan if r[key] is None else r[key] for r in rows]

    if results["kind"] == "math":
        series = [("single sample", "single_sample_accuracy", "--", None), ("majority vote", "majority_accuracy", "-", "s"),
                  ("synthesis", "synthesis_accuracy", "-", "o")]
        ylabel = "accuracy"
    else:
        series = [("single sample", "single_sample_score", "--", None), ("synthesis", "synthesis_score", "-", "o")]
        ylabel = "rubric score (HealthBench)"
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    try:
        for order, (label, key, style, marker) in enumerate(series):  # synthesis last: drawn on top
            axes.plot(xs, ys(key), linestyle=style, marker=marker, label=label, zorder=2 + order)
        if len(xs) > 1 and min(xs) > 0:
            axes.set_xscale("log", base=2)
        axes.set_xticks(xs, [str(x) for x in xs])
        axes.minorticks_off()
        axes.set_xlabel("G (rollouts per prompt)")
        axes.set_ylabel(ylabel)
        axes.set_ylim(-0.02, 1.02)
        config = results["config"]
        axes.set_title(f"{config['data']}: {config['items']} items, policy {config['policy']['model']}", fontsize=9)
        axes.grid(True, alpha=0.3)
        axes.legend(loc="best", fontsize=8)
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)


def write_outputs(results: dict, out: Path, *, plot: bool = True) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(results), encoding="utf-8")
    if plot:
        paths["plot"] = out / "score_vs_G.png"
        write_plot(results, paths["plot"])
    return paths
