"""``cat-reward judge-quality``: is this judge (and this reward) good enough? Scored against labels.

Two formats, detected from the keys of each file's first record:

    pairwise   {"prompt", "chosen", "rejected", "subset"?, "id"?}      RewardBench's form
    pointwise  {"prompt", "response", "criterion", "label", "subset"?, "id"?}

Pairwise: each pair is one group of two rollouts scored by the service's own pipeline (rubric
mode: synthesis from the two responses, a self-proposed rubric, the judge's verdicts), in an
order fixed per item by a seeded coin (the synthesis must not learn that the chosen one comes
first). The pair is right when reward(chosen) > reward(rejected), strictly, as RewardBench counts
(ties are wrong, and counted). Every aggregation asked for (``--aggregations``) is computed from
the same verdicts, so the modes are compared on the same rubric and judge answers.

Pointwise: each item is one verdict (the caller's criterion on the response, aggregator
``none``): accuracy of met vs label, AUC of P(yes), and expected calibration error (10 equal-width
bins of P(yes)).

Intervals are percentile bootstrap intervals (1000 resamples of the items, seeded). Cost: LLM
tokens per item, split by stage (judge verdicts vs anchor synthesis and rubric), and wall time.
Failures (an LLM error, a verdict that could not be parsed) are counted with their reason, and
left out of the numbers, never scored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from ..engine.aggregation import Uncomputable, aggregate
from ..engine.errors import CatError
from ..engine.types import AGGREGATIONS, Criterion, EnsembleMember, Group, GroupOptions, Sampling, Verdict

SCHEMA = "cat-reward-judge-quality/1"
BUILTIN = {"pairwise": "judge_pairwise.jsonl", "pointwise": "judge_pointwise.jsonl"}
REQUIRED = {"pairwise": ("prompt", "chosen", "rejected"), "pointwise": ("prompt", "response", "criterion", "label")}
BOOTSTRAP = 1000
ECE_BINS = 10


class JudgeQualityError(ValueError):
    """The data or the options cannot be used as given; the message says where and why."""


# --- data ------------------------------------------------------------------------------------


@dataclass
class DataSet:
    kind: str  # pairwise | pointwise
    source: str
    items: list[dict]


def _records(source: str) -> tuple[str, list[dict]]:
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name not in BUILTIN:
            raise JudgeQualityError(f"unknown builtin set {name!r}; builtin:pairwise or builtin:pointwise")
        text = resources.files(__package__).joinpath("fixtures", BUILTIN[name]).read_text(encoding="utf-8")
        return BUILTIN[name], _jsonl(text, BUILTIN[name])
    if source.startswith("hf:"):
        spec = source[3:]
        name, _, split = spec.partition(":")
        try:
            import datasets  # optional: pip install datasets
        except ImportError:
            raise JudgeQualityError(f"{source}: reading a Hugging Face dataset needs `pip install datasets`") from None
        try:
            rows = datasets.load_dataset(name, split=split or "train")
        except Exception as exc:  # noqa: BLE001 - the library raises many kinds
            raise JudgeQualityError(f"{source}: cannot load: {type(exc).__name__}: {exc}") from None
        return source, [dict(r) for r in rows]
    path = Path(source)
    if not path.is_file():
        raise JudgeQualityError(f"{source}: no such file")
    return source, _jsonl(path.read_text(encoding="utf-8"), source)


def _jsonl(text: str, name: str) -> list[dict]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JudgeQualityError(f"{name}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise JudgeQualityError(f"{name}:{n}: a record must be a JSON object")
        out.append(record)
    if not out:
        raise JudgeQualityError(f"{name}: no records")
    return out


def _label(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise JudgeQualityError(f"{where}: label must be true/false (or 1/0, yes/no), not {value!r}")


def load(source: str, limit: int | None = None) -> DataSet:
    name, records = _records(source)
    first = records[0]
    kinds = [k for k, keys in REQUIRED.items() if all(key in first for key in keys)]
    if len(kinds) != 1:
        raise JudgeQualityError(
            f"{name}:1: cannot tell the format; pairwise needs prompt, chosen, rejected; "
            "pointwise needs prompt, response, criterion, label"
        )
    kind = kinds[0]
    items = []
    for n, record in enumerate(records[: limit or None], 1):
        where = f"{name}:{n}"
        for key in REQUIRED[kind]:
            if key not in record:
                raise JudgeQualityError(f"{where}: missing {key!r}")
        for key in REQUIRED[kind]:
            if key != "label" and not (isinstance(record[key], str) and record[key].strip()):
                if key == "prompt" and isinstance(record[key], list) and record[key]:
                    continue  # chat messages
                raise JudgeQualityError(f"{where}: {key!r} must be a non-empty string")
        item = {
            "id": str(record.get("id", f"{kind}-{n}")),
            "subset": str(record.get("subset") or "all"),
            "prompt": record["prompt"],
        }
        if kind == "pairwise":
            item.update(chosen=record["chosen"], rejected=record["rejected"])
        else:
            item.update(response=record["response"], criterion=record["criterion"], label=_label(record["label"], where))
        items.append(item)
    return DataSet(kind=kind, source=source, items=items)


# --- statistics --------------------------------------------------------------------------------


def bootstrap_ci(values: list, statistic, seed: int = 0, resamples: int = BOOTSTRAP) -> list[float] | None:
    """95% percentile interval of ``statistic`` over resamples of ``values``."""
    if not values:
        return None
    rng = random.Random(seed)
    n = len(values)
    stats = []
    for _ in range(resamples):
        sample = [values[rng.randrange(n)] for _ in range(n)]
        value = statistic(sample)
        if value is not None:
            stats.append(value)
    if not stats:
        return None
    stats.sort()
    lo = stats[int(0.025 * (len(stats) - 1))]
    hi = stats[int(math.ceil(0.975 * (len(stats) - 1)))]
    return [round(lo, 4), round(hi, 4)]


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def auc(pairs: list[tuple[float, bool]]) -> float | None:
    """Area under the ROC curve of scores vs labels (Mann-Whitney, ties count half)."""
    pos = [s for s, y in pairs if y]
    neg = [s for s, y in pairs if not y]
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def reliability(pairs: list[tuple[float, bool]], bins: int = ECE_BINS) -> list[dict]:
    out = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(p, y) for p, y in pairs if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        out.append(
            {
                "lo": lo,
                "hi": hi,
                "count": len(inside),
                "mean_p": mean([p for p, _ in inside]),
                "frequency": mean([1.0 if y else 0.0 for _, y in inside]),
            }
        )
    return out


def ece(pairs: list[tuple[float, bool]], bins: int = ECE_BINS) -> float | None:
    if not pairs:
        return None
    return sum(b["count"] / len(pairs) * abs(b["mean_p"] - b["frequency"]) for b in reliability(pairs, bins) if b["count"])


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# --- scoring -----------------------------------------------------------------------------------


@dataclass
class HarnessOptions:
    aggregations: tuple[str, ...] = ("fraction", "soft")
    ensemble: tuple[EnsembleMember, ...] = ()
    concurrency: int = 4
    seed: int = 0  # pair order and bootstrap
    llm_seed: int | None = None  # passed to the anchor and judge (off: see evaluation/README.md on seeds and CPU vLLM)
    synthesis_max_tokens: int | None = None
    rubric_max_tokens: int | None = None
    rubric_prompt: str | None = None  # standard | weighted (pairwise); default: the settings'
    extra: dict = field(default_factory=dict)


def _coin(item_id: str, seed: int) -> bool:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[0] % 2 == 1


def _judge_tokens(outcome) -> dict:
    stages = outcome.usage.stages
    judge = sum(s.prompt_tokens + s.completion_tokens for n, s in stages.items() if n in ("verdict", "equivalence"))
    anchor = sum(s.prompt_tokens + s.completion_tokens for n, s in stages.items() if n not in ("verdict", "equivalence"))
    return {"judge_tokens": judge, "anchor_tokens": anchor, "llm_calls": outcome.usage.llm_calls}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CatError):
        return f"{exc.type}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


async def score_pair(pipeline, item: dict, base: GroupOptions, options: HarnessOptions) -> dict:
    swapped = _coin(item["id"], options.seed)
    rollouts = [item["rejected"], item["chosen"]] if swapped else [item["chosen"], item["rejected"]]
    group = Group(prompt=item["prompt"], rollouts=rollouts, mode="rubric", options=replace(base, aggregation="fraction"))
    result: dict = {"id": item["id"], "subset": item["subset"], "chosen_index": 1 if swapped else 0}
    started = time.perf_counter()
    try:
        outcome = await pipeline.score(group)
    except Exception as exc:  # noqa: BLE001 - recorded as this item's failure
        result["error"] = _describe(exc)
        result["wall_s"] = round(time.perf_counter() - started, 3)
        return result
    result["wall_s"] = round(time.perf_counter() - started, 3)
    result.update(_judge_tokens(outcome))
    result["n_criteria"] = len(outcome.rubric)
    importances: dict[str, int] = {}
    for c in outcome.rubric:
        if c.importance is not None:
            importances[c.importance] = importances.get(c.importance, 0) + 1
    if importances:  # a weighted rubric: how the anchor spread its criteria
        result["importances"] = importances
    ci, ri = (1, 0) if swapped else (0, 1)
    rewards: dict = {}
    for mode in options.aggregations:
        mode_options = replace(base, aggregation=mode)
        pair = []
        for index in (ci, ri):
            try:
                pair.append(aggregate(outcome.rubric, outcome.rollouts[index].verdicts, mode_options))
            except Uncomputable as exc:
                pair.append(None)
                rewards.setdefault("_errors", {})[mode] = str(exc)
        rewards[mode] = {"chosen": pair[0], "rejected": pair[1]}
    result["rewards"] = rewards
    names = [m.member for m in outcome.rollouts[0].verdicts[0].members] if outcome.rollouts[0].verdicts else []
    if names:  # an ensemble: each member alone, on the same rubric, from its own verdicts
        result["member_rewards"] = {}
        for k, name in enumerate(names):
            per_mode = {}
            for mode in options.aggregations:
                mode_options = replace(base, aggregation=mode)
                pair = []
                for index in (ci, ri):
                    own = [Verdict(v.criterion_id, met=v.members[k].met, p_yes=v.members[k].p_yes) for v in outcome.rollouts[index].verdicts]
                    try:
                        pair.append(aggregate(outcome.rubric, own, mode_options))
                    except Uncomputable:
                        pair.append(None)
                per_mode[mode] = {"chosen": pair[0], "rejected": pair[1]}
            result["member_rewards"][name] = per_mode
    return result


async def score_point(pipeline, item: dict, base: GroupOptions) -> dict:
    criterion = Criterion(id="c1", text=item["criterion"], source="caller")
    options = replace(base, aggregator="none", rubric_source="supplied", rubric_prompt="standard")
    group = Group(prompt=item["prompt"], rollouts=[item["response"]], mode="rubric", rubric=(criterion,), options=options)
    result: dict = {"id": item["id"], "subset": item["subset"], "label": item["label"]}
    started = time.perf_counter()
    try:
        outcome = await pipeline.score(group)
    except Exception as exc:  # noqa: BLE001
        result["error"] = _describe(exc)
        result["wall_s"] = round(time.perf_counter() - started, 3)
        return result
    result["wall_s"] = round(time.perf_counter() - started, 3)
    result.update(_judge_tokens(outcome))
    verdict = outcome.rollouts[0].verdicts[0]
    result.update(met=verdict.met, p_yes=verdict.p_yes, spread=verdict.spread)
    if verdict.members:
        result["members"] = [{"member": m.member, "met": m.met, "p_yes": m.p_yes} for m in verdict.members]
    if verdict.met is None:
        result["error"] = f"verdict_failed: {verdict.error}"
    return result


# --- summaries ---------------------------------------------------------------------------------


def _accuracy(flags: list[bool]) -> float | None:
    return mean([1.0 if f else 0.0 for f in flags])


def summarize_pairwise(results: list[dict], aggregations: tuple[str, ...], seed: int = 0) -> dict:
    ok = [r for r in results if "error" not in r]
    summary: dict = {"items": len(results), "scored": len(ok), "errors": len(results) - len(ok), "modes": {}}
    summary["error_reasons"] = _reasons(results)
    subsets = sorted({r["subset"] for r in ok})
    for mode in aggregations:
        rows = [r for r in ok if r["rewards"][mode]["chosen"] is not None and r["rewards"][mode]["rejected"] is not None]
        wins = [r["rewards"][mode]["chosen"] > r["rewards"][mode]["rejected"] for r in rows]
        ties = sum(r["rewards"][mode]["chosen"] == r["rewards"][mode]["rejected"] for r in rows)
        per_subset = {}
        for subset in subsets:
            per_subset[subset] = _subset([w for r, w in zip(rows, wins) if r["subset"] == subset], seed)
        summary["modes"][mode] = {
            "accuracy": _r(_accuracy(wins)),
            "ci95": bootstrap_ci(wins, _accuracy, seed),
            "n": len(wins),
            "ties": ties,
            "uncomputable": len(ok) - len(rows),
            "subsets": per_subset,
        }
    members = sorted({name for r in ok for name in r.get("member_rewards", {})})
    if members:
        summary["members"] = {}
        for name in members:
            summary["members"][name] = {}
            for mode in aggregations:
                pairs = [r["member_rewards"][name][mode] for r in ok if name in r.get("member_rewards", {})]
                pairs = [p for p in pairs if p["chosen"] is not None and p["rejected"] is not None]
                wins = [p["chosen"] > p["rejected"] for p in pairs]
                summary["members"][name][mode] = {
                    "accuracy": _r(_accuracy(wins)), "ci95": bootstrap_ci(wins, _accuracy, seed), "n": len(wins),
                    "ties": sum(p["chosen"] == p["rejected"] for p in pairs),
                }
    summary["cost"] = _cost(ok)
    return summary


def _pointwise_metrics(rows: list[tuple[bool | None, float | None, bool]], seed: int) -> dict:
    """(met, p_yes, label) rows -> accuracy, AUC, ECE with intervals."""
    right = [met == label for met, _, label in rows if met is not None]
    scored = [(p, label) for _, p, label in rows if p is not None]
    return {
        "accuracy": _r(_accuracy(right)),
        "accuracy_ci95": bootstrap_ci(right, _accuracy, seed),
        "auc": _r(auc(scored)),
        "auc_ci95": bootstrap_ci(scored, auc, seed),
        "ece": _r(ece(scored)),
        "n": len(right),
    }


def summarize_pointwise(results: list[dict], seed: int = 0) -> dict:
    ok = [r for r in results if "error" not in r]
    right = [r["met"] == r["label"] for r in ok]
    scored = [(r["p_yes"], r["label"]) for r in ok if r["p_yes"] is not None]
    subsets = sorted({r["subset"] for r in ok})
    return {
        "items": len(results),
        "scored": len(ok),
        "errors": len(results) - len(ok),
        "error_reasons": _reasons(results),
        "positives": sum(1 for r in ok if r["label"]),
        "accuracy": _r(_accuracy(right)),
        "accuracy_ci95": bootstrap_ci(right, _accuracy, seed),
        "said_yes": _r(_accuracy([bool(r["met"]) for r in ok])),
        "auc": _r(auc(scored)),
        "auc_ci95": bootstrap_ci(scored, auc, seed),
        "ece": _r(ece(scored)),
        "ece_ci95": bootstrap_ci(scored, ece, seed),
        "with_p_yes": len(scored),
        "mean_spread": _r(mean([r["spread"] for r in ok if r.get("spread") is not None])),
        "reliability": reliability(scored),
        "subsets": {s: _subset([r["met"] == r["label"] for r in ok if r["subset"] == s], seed) for s in subsets},
        "cost": _cost(ok),
        **_pointwise_members(ok, seed),
    }


def _pointwise_members(ok: list[dict], seed: int) -> dict:
    names = sorted({m["member"] for r in ok for m in r.get("members", [])})
    if not names:
        return {}
    out = {}
    for name in names:
        rows = [(m["met"], m["p_yes"], r["label"]) for r in ok for m in r.get("members", []) if m["member"] == name]
        out[name] = _pointwise_metrics(rows, seed)
    return {"members": out}


def _subset(flags: list[bool], seed: int) -> dict:
    return {"accuracy": _r(_accuracy(flags)), "ci95": bootstrap_ci(flags, _accuracy, seed), "n": len(flags)}


def _reasons(results: list[dict]) -> dict:
    reasons: dict[str, int] = {}
    for r in results:
        if "error" in r:
            key = r["error"].split(":", 1)[0]
            reasons[key] = reasons.get(key, 0) + 1
    return reasons


def _cost(ok: list[dict]) -> dict:
    return {
        "judge_tokens_per_item": _r(mean([r["judge_tokens"] for r in ok])),
        "anchor_tokens_per_item": _r(mean([r["anchor_tokens"] for r in ok])),
        "llm_calls_per_item": _r(mean([r["llm_calls"] for r in ok])),
        "wall_s_per_item": _r(mean([r["wall_s"] for r in ok])),
    }


# --- the run -----------------------------------------------------------------------------------


def _progress(total: int, enabled: bool):
    from .runner import _progress as bar

    return bar(total, "judge-quality", enabled, sys.stderr)


async def run(
    datasets: list[DataSet],
    settings,
    options: HarnessOptions,
    *,
    roles=None,
    progress: bool = True,
) -> dict:
    """The report document (``SCHEMA``)."""
    from ..rewarding import default_options
    from ..wiring import open_services  # here: wiring and api import each other, api first

    for mode in options.aggregations:
        if mode not in AGGREGATIONS:
            raise JudgeQualityError(f"unknown aggregation {mode!r}; one of {', '.join(AGGREGATIONS)}")
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    services = await open_services(settings, roles=roles, with_history=False)
    try:
        from ..engine.judge import verdict_variants

        variants = verdict_variants(services.pipeline.prompts)
        for m in options.ensemble:
            if services.roles.named_judge(m.judge) is None:
                raise JudgeQualityError(f"--ensemble: unknown judge {m.judge!r} (configure it in CAT_EXTRA_JUDGES)")
            if m.prompt not in variants:
                raise JudgeQualityError(f"--ensemble: unknown verdict prompt {m.prompt!r}; one of {', '.join(variants)}")
        base = default_options(settings)
        # The hacking canary is not a verdict on the data: it would only add judge calls to the cost.
        base = replace(
            base, ensemble=options.ensemble or base.ensemble, seed=options.llm_seed, use_cache=False, canary=False
        )
        if options.rubric_prompt:
            base = replace(base, rubric_prompt=options.rubric_prompt)
        if options.synthesis_max_tokens:
            base = replace(base, synthesis=Sampling(base.synthesis.temperature, base.synthesis.top_p, options.synthesis_max_tokens))
        if options.rubric_max_tokens:
            base = replace(base, rubric=Sampling(base.rubric.temperature, base.rubric.top_p, options.rubric_max_tokens))
        pipeline = services.pipeline
        total = sum(len(d.items) for d in datasets)
        bar = _progress(total, progress)
        gate = asyncio.Semaphore(max(1, options.concurrency))
        failures = 0

        async def one(kind: str, item: dict) -> dict:
            nonlocal failures
            async with gate:
                if kind == "pairwise":
                    result = await score_pair(pipeline, item, base, options)
                else:
                    result = await score_point(pipeline, item, base)
            if "error" in result:
                failures += 1
                bar.set_postfix_str(f"errors={failures}")
            bar.update(1)
            return result

        sections = []
        try:
            for data in datasets:
                t0 = time.perf_counter()
                results = await asyncio.gather(*(one(data.kind, item) for item in data.items))
                elapsed = time.perf_counter() - t0
                summary = (
                    summarize_pairwise(results, options.aggregations, options.seed)
                    if data.kind == "pairwise"
                    else summarize_pointwise(results, options.seed)
                )
                summary["cost"]["wall_s_total"] = round(elapsed, 2)
                sections.append({"kind": data.kind, "source": data.source, "summary": summary, "items": results})
        finally:
            bar.close()
        members = base.ensemble or (EnsembleMember(),)
        return {
            "schema": SCHEMA,
            "config": {
                "anchor_model": services.roles.anchor.model,
                "judge_model": services.roles.judge.model,
                "prompt_version": pipeline.prompts.version,
                "aggregations": list(options.aggregations),
                "rubric_prompt": base.rubric_prompt,
                "ensemble": [
                    {"name": m.name, "model": services.roles.named_judge(m.judge).model} for m in members  # type: ignore[union-attr]
                ],
                "synthesis_max_tokens": base.synthesis.max_tokens,
                "rubric_max_tokens": base.rubric.max_tokens,
                "seed": options.seed,
                "llm_seed": options.llm_seed,
                "concurrency": options.concurrency,
                "started_at": started_at,
                "elapsed_s": round(time.perf_counter() - started, 1),
            },
            "sections": sections,
        }
    finally:
        await services.aclose()


# --- report ------------------------------------------------------------------------------------


def _fmt(value, ci=None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.3f}"
    if ci:
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def table(report: dict) -> str:
    config = report["config"]
    lines = [
        f"judge {config['judge_model']}, anchor {config['anchor_model']}, prompts {config['prompt_version']}, "
        f"ensemble {', '.join(m['name'] for m in config['ensemble'])}",
    ]
    for section in report["sections"]:
        s = section["summary"]
        cost = s["cost"]
        lines.append("")
        lines.append(f"{section['kind']} ({section['source']}): {s['scored']} of {s['items']} scored, {s['errors']} errors {s['error_reasons'] or ''}")
        if section["kind"] == "pairwise":
            subsets = sorted({k for m in s["modes"].values() for k in m["subsets"]})
            lines.append("| aggregation | accuracy [95% CI] | ties | " + " | ".join(subsets) + " |")
            lines.append("|---|---|---|" + "---|" * len(subsets))
            for mode, m in s["modes"].items():
                cells = [_fmt(m["subsets"][k]["accuracy"]) + f" (n={m['subsets'][k]['n']})" for k in subsets]
                lines.append(f"| {mode} | {_fmt(m['accuracy'], m['ci95'])} | {m['ties']} | " + " | ".join(cells) + " |")
            for name, modes in s.get("members", {}).items():
                for mode, m in modes.items():
                    lines.append(f"| {mode}, {name} alone | {_fmt(m['accuracy'], m['ci95'])} | {m['ties']} |" + " |" * len(subsets))
        else:
            lines.append("| accuracy [95% CI] | AUC of P(yes) [95% CI] | ECE [95% CI] | said yes | positives |")
            lines.append("|---|---|---|---|---|")
            lines.append(
                f"| {_fmt(s['accuracy'], s['accuracy_ci95'])} | {_fmt(s['auc'], s['auc_ci95'])} | "
                f"{_fmt(s['ece'], s['ece_ci95'])} | {_fmt(s['said_yes'])} | {s['positives']}/{s['scored']} |"
            )
            for name, m in s.get("members", {}).items():
                lines.append(
                    f"| {name} alone: {_fmt(m['accuracy'], m['accuracy_ci95'])} | {_fmt(m['auc'], m['auc_ci95'])} | {_fmt(m['ece'])} | | |"
                )
        lines.append(
            f"cost per item: {cost['judge_tokens_per_item']} judge tokens, {cost['anchor_tokens_per_item']} anchor tokens, "
            f"{cost['llm_calls_per_item']} LLM calls, {cost['wall_s_per_item']} s (all items: {cost['wall_s_total']} s wall)"
        )
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Per-subset accuracy bars (with 95% intervals) and the reliability diagram, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, heights, errors, colours = [], [], [], []
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    for section in report["sections"]:
        s = section["summary"]
        if section["kind"] == "pairwise":
            for i, (mode, m) in enumerate(s["modes"].items()):
                for subset, v in list(m["subsets"].items()) + [("overall", {"accuracy": m["accuracy"], "ci95": m["ci95"]})]:
                    labels.append(f"{mode} / {subset}")
                    heights.append(v["accuracy"] or 0.0)
                    ci = v.get("ci95") or [v["accuracy"] or 0.0] * 2
                    errors.append([max(0.0, (v["accuracy"] or 0) - ci[0]), max(0.0, ci[1] - (v["accuracy"] or 0))])
                    colours.append(palette[i % len(palette)])
        else:
            for subset, v in list(s["subsets"].items()) + [("overall", {"accuracy": s["accuracy"], "ci95": s["accuracy_ci95"]})]:
                labels.append(f"pointwise / {subset}")
                heights.append(v["accuracy"] or 0.0)
                ci = v.get("ci95") or [v["accuracy"] or 0.0] * 2
                errors.append([max(0.0, (v["accuracy"] or 0) - ci[0]), max(0.0, ci[1] - (v["accuracy"] or 0))])
                colours.append("#937860")
    width = max(5.0, 0.32 * len(labels) + 1.5)
    fig, (bars, diagram) = plt.subplots(1, 2, figsize=(width + 5.5, 5.2), gridspec_kw={"width_ratios": [width, 5.0]})
    if labels:
        xs = range(len(labels))
        bars.bar(xs, heights, color=colours, yerr=list(zip(*errors)), capsize=3)
        bars.set_xticks(list(xs), labels, rotation=75, ha="right", fontsize=7)
        bars.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    bars.set_ylim(0, 1)
    bars.set_ylabel("accuracy (pairwise: chosen > rejected)")
    bars.set_title("accuracy by subset, 95% bootstrap CI")
    diagram.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    drawn = False
    for section in report["sections"]:
        if section["kind"] != "pointwise":
            continue
        bins = [b for b in section["summary"]["reliability"] if b["count"]]
        if bins:
            diagram.plot([b["mean_p"] for b in bins], [b["frequency"] for b in bins], marker="o", label=section["source"])
            for b in bins:
                diagram.annotate(str(b["count"]), (b["mean_p"], b["frequency"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            drawn = True
    if drawn:
        diagram.legend(fontsize=8)
    else:
        diagram.text(0.5, 0.5, "no pointwise data: nothing to calibrate", ha="center", va="center")
    diagram.set_xlim(0, 1)
    diagram.set_ylim(0, 1)
    diagram.set_xlabel("mean P(yes) in bin")
    diagram.set_ylabel("share labelled met")
    diagram.set_title("reliability (pointwise; numbers: items per bin)")
    fig.suptitle(f"judge {report['config']['judge_model']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the command -------------------------------------------------------------------------------


def main(args) -> int:
    """``cat-reward judge-quality``; exit 0, 1 (nothing could be scored) or 2 (usage)."""
    from pydantic import ValidationError

    from ..settings import Settings

    def fail(message: str, code: int) -> int:
        print(f"[cat-reward judge-quality] {message}", file=sys.stderr, flush=True)
        return code

    plot_path = None
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return fail("the plot needs matplotlib: pip install 'cat-reward[eval]' (or pass --no-plot)", 2)
        plot_path = Path(args.png) if args.png else Path(args.json).with_suffix(".png")
    aggregations = tuple(a.strip() for a in args.aggregations.split(",") if a.strip())
    members = [m.strip() for m in (args.ensemble or "").split(",") if m.strip()]
    if any(len(m.split("/")) != 2 or not all(m.split("/")) for m in members):
        return fail(f"--ensemble takes JUDGE/PROMPT members, comma-separated, not {args.ensemble!r}", 2)
    ensemble = tuple(EnsembleMember(*m.split("/")) for m in members)
    if args.concurrency < 1:
        return fail("--concurrency must be at least 1", 2)
    try:
        settings = Settings()
    except ValidationError as exc:
        return fail(f"invalid CAT_* settings: {exc}", 2)
    try:
        datasets = [load(source, args.limit) for source in args.data]
    except JudgeQualityError as exc:
        return fail(str(exc), 2)
    options = HarnessOptions(
        aggregations=aggregations,
        ensemble=ensemble,
        concurrency=args.concurrency,
        seed=args.seed,
        llm_seed=args.llm_seed,
        synthesis_max_tokens=args.synthesis_max_tokens,
        rubric_max_tokens=args.rubric_max_tokens,
        rubric_prompt=args.rubric_prompt,
    )
    try:
        report = asyncio.run(run(datasets, settings, options, progress=not args.no_progress))
    except JudgeQualityError as exc:
        return fail(str(exc), 2)
    except CatError as exc:  # e.g. an ensemble member that is not configured
        return fail(f"{exc.type}: {exc.message}", 2)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"json: {out}")
    if plot_path is not None:
        plot(report, plot_path)
        print(f"png: {plot_path}")
    if not any(section["summary"]["scored"] for section in report["sections"]):
        return fail("no item could be scored; see error_reasons in the JSON", 1)
    return 0
