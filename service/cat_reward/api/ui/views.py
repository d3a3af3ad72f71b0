"""What the dashboard's templates show, computed from stored records: plain data, no HTML.

Records are read as stored, with ``.get`` everywhere: the history keeps records of older
releases too, and a page must show whatever a record has rather than fail on what it lacks.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone

# --- small formatting helpers (also registered as template filters) -----------------------


def fmt_time(stamp: str | None, zone: bool = True) -> str:
    """``2025-03-01T12:00:00.123456+00:00`` -> ``2025-03-01 12:00:00 UTC`` (stored times are UTC)."""
    if not stamp:
        return ""
    try:
        value = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if zone else "")


def fmt_num(value, digits: int = 2) -> str:
    """A reward or probability for a table cell; ``–`` for none."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    text = f"{value:.{digits}f}"
    return "0." + "0" * digits if text == "-0." + "0" * digits else text


def prompt_messages(prompt) -> list[dict]:
    """The request's prompt as (role, content) messages: a plain string is one user message."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list):
        return [
            {"role": str(m.get("role", "")), "content": str(m.get("content", ""))} if isinstance(m, dict) else
            {"role": "", "content": str(m)}
            for m in prompt
        ]  # fmt: skip
    return [{"role": "", "content": "" if prompt is None else str(prompt)}]


def prompt_preview(prompt, width: int = 90) -> str:
    """One line of the prompt (the last user message) for the history table."""
    messages = prompt_messages(prompt)
    users = [m["content"] for m in messages if m["role"] == "user"] or [m["content"] for m in messages]
    text = " ".join((users[-1] if users else "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --- rewards summaries --------------------------------------------------------------------


@dataclass
class RewardStats:
    n: int  # rewards in all, null ones included
    values: list[float]
    mean: float | None = None
    minimum: float | None = None
    q1: float | None = None
    median: float | None = None
    q3: float | None = None
    maximum: float | None = None

    @property
    def missing(self) -> int:
        return self.n - len(self.values)


def reward_stats(rewards) -> RewardStats:
    rewards = rewards if isinstance(rewards, list) else []
    values = [float(r) for r in rewards if isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r)]
    stats = RewardStats(n=len(rewards), values=values)
    if values:
        ordered = sorted(values)
        stats.mean = statistics.fmean(ordered)
        stats.minimum, stats.maximum = ordered[0], ordered[-1]
        stats.median = statistics.median(ordered)
        if len(ordered) >= 2:
            stats.q1, _, stats.q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        else:
            stats.q1 = stats.q3 = ordered[0]
    return stats


def summary_row(record: dict) -> dict:
    """A history-table row."""
    result = record.get("result") or {}
    request = record.get("request") or {}
    return {
        "id": record.get("id", ""),
        "created_at": record.get("created_at"),
        "run_id": record.get("run_id"),
        "step": record.get("step"),
        "group_id": record.get("group_id"),
        "mode": record.get("mode", ""),
        "prompt": prompt_preview(request.get("prompt")),
        "stats": reward_stats(result.get("rewards")),
        "n_criteria": len(result.get("rubric") or []),
        "flags": list(result.get("flags") or []),
    }


# --- the verdict matrix -------------------------------------------------------------------


@dataclass
class Cell:
    state: str  # met, unmet, failed (no verdict could be had), missing (the record has none)
    p_yes: float | None = None
    raw: str | None = None
    error: str | None = None
    attempts: int | None = None
    cached: bool = False

    @property
    def label(self) -> str:
        return {"met": "met", "unmet": "unmet", "failed": "failed", "missing": "no verdict"}[self.state]

    @property
    def title(self) -> str:
        """The cell's tooltip: everything the record says about this verdict."""
        parts = [self.label]
        if self.p_yes is not None:
            parts.append(f"P(yes) = {self.p_yes:.4f}")
        if self.raw is not None:
            parts.append(f"judge said: {self.raw!r}")
        if self.attempts and self.attempts > 1:
            parts.append(f"{self.attempts} attempts")
        if self.cached:
            parts.append("from the verdict cache")
        if self.error:
            parts.append(f"error: {self.error}")
        return "; ".join(parts)


@dataclass
class Row:
    id: str
    text: str
    weight: float | None
    source: str
    tags: list[str]
    cells: list[Cell]
    met: int = 0
    judged: int = 0
    discriminating: bool | None = None


@dataclass
class Matrix:
    """Rows are criteria, columns rollouts."""

    title: str
    rows: list[Row]
    rewards: list
    columns: int
    diagnostics: dict = field(default_factory=dict)


def _cell(verdict: dict | None) -> Cell:
    if not isinstance(verdict, dict):
        return Cell("missing")
    met = verdict.get("met")
    p_yes = verdict.get("p_yes")
    p_yes = float(p_yes) if isinstance(p_yes, (int, float)) and not isinstance(p_yes, bool) else None
    state = "met" if met is True else "unmet" if met is False else "failed"
    return Cell(
        state,
        p_yes=p_yes,
        raw=verdict.get("raw"),
        error=verdict.get("error"),
        attempts=verdict.get("attempts"),
        cached=bool(verdict.get("cached")),
    )


def verdict_matrix(title: str, criteria: list, details: list, rewards: list, diagnostics: dict | None) -> Matrix:
    """Criteria x rollouts from a result's (or its ``supplied`` part's) rubric and details."""
    details = [d for d in (details or []) if isinstance(d, dict)]
    columns = max(len(rewards or []), len(details))
    by_rollout: list[dict[str, dict]] = [{} for _ in range(columns)]
    for position, detail in enumerate(details):
        index = detail.get("index", position)
        if isinstance(index, int) and 0 <= index < columns:
            by_rollout[index] = {
                v.get("criterion_id"): v for v in detail.get("verdicts") or [] if isinstance(v, dict)
            }
    signals = {
        s.get("criterion_id"): s
        for s in (diagnostics.get("criteria") if isinstance(diagnostics, dict) else None) or []
        if isinstance(s, dict)
    }
    rows = []
    for criterion in criteria or []:
        if not isinstance(criterion, dict):
            continue
        cid = str(criterion.get("id", ""))
        cells = [_cell(verdicts.get(cid)) for verdicts in by_rollout]
        signal = signals.get(cid, {})
        rows.append(
            Row(
                id=cid,
                text=str(criterion.get("text", "")),
                weight=criterion.get("weight"),
                source=str(criterion.get("source", "anchor")),
                tags=[str(t) for t in criterion.get("tags") or []],
                cells=cells,
                met=signal.get("met", sum(c.state == "met" for c in cells)),
                judged=signal.get("judged", sum(c.state in ("met", "unmet") for c in cells)),
                discriminating=signal.get("discriminating"),
            )
        )
    diagnostics = diagnostics if isinstance(diagnostics, dict) else {}
    summary = {
        k: diagnostics.get(k)
        for k in ("reward_mean", "reward_std", "zero_variance", "discriminating_criteria", "regenerated",
                  "canary_yes", "canary_judged", "judge_unreliable")
    }  # fmt: skip
    return Matrix(
        title=title, rows=rows, rewards=list(rewards or []), columns=columns, diagnostics=summary if diagnostics else {}
    )


def judge_matrix(details: list, rewards: list) -> Matrix:
    """Judge mode: one row, the judge's equivalence verdict per rollout."""
    criteria = [{"id": "equivalent", "text": "Reaches the same final answer as the reference (the judge's verdict).",
                 "weight": None, "source": "judge"}]  # fmt: skip
    return verdict_matrix("Equivalence verdicts", criteria, details, rewards, None)


@dataclass
class Rollout:
    index: int
    text: str
    reward: float | None
    extracted_answer: str | None
    extractor: str | None
    flags: list[str]
    error: str | None
    raw_reward: float | None = None  # before the injection policy
    policy: str | None = None  # the injection policy applied (flagged rollouts)
    canary: dict | None = None  # the judge's verdict on the rollout's canary criterion


def rollouts(request: dict, result: dict) -> list[Rollout]:
    texts = request.get("rollouts") or []
    rewards = result.get("rewards") or []
    details = {d.get("index", i): d for i, d in enumerate(result.get("details") or []) if isinstance(d, dict)}
    out = []
    for i in range(max(len(texts), len(rewards), len(details))):
        detail = details.get(i, {})
        out.append(
            Rollout(
                index=i,
                text=str(texts[i]) if i < len(texts) else "",
                reward=rewards[i] if i < len(rewards) else detail.get("reward"),
                extracted_answer=detail.get("extracted_answer"),
                extractor=detail.get("extractor"),
                flags=[str(f) for f in detail.get("flags") or []],
                error=detail.get("error"),
                raw_reward=detail.get("raw_reward"),
                policy=detail.get("policy"),
                canary=detail.get("canary") if isinstance(detail.get("canary"), dict) else None,
            )
        )
    return out


def record_view(record: dict) -> dict:
    """Everything the rubric page shows of one record."""
    request = record.get("request") or {}
    result = record.get("result") or {}
    mode = record.get("mode") or result.get("mode") or ""
    rewards = result.get("rewards") or []
    matrices = []
    if result.get("rubric"):
        matrices.append(
            verdict_matrix("Criteria × rollouts", result["rubric"], result.get("details"), rewards, result.get("diagnostics"))
        )
    elif mode == "judge":
        matrices.append(judge_matrix(result.get("details"), rewards))
    supplied = result.get("supplied")
    if isinstance(supplied, dict) and supplied.get("rubric"):
        matrices.append(
            verdict_matrix(
                "The caller's rubric × rollouts", supplied["rubric"], supplied.get("details"),
                supplied.get("rewards") or [], supplied.get("diagnostics"),
            )
        )  # fmt: skip
    metadata = request.get("metadata") or {}
    return {
        "record": record,
        "mode": mode,
        "messages": prompt_messages(request.get("prompt")),
        "reference": result.get("reference"),
        "reference_answer": result.get("reference_answer"),
        "aggregator": result.get("aggregator"),
        "reference_details": result.get("reference_details") or {},
        "matrices": matrices,
        "rollouts": rollouts(request, result),
        "stats": reward_stats(rewards),
        "flags": [str(f) for f in result.get("flags") or []],
        "diagnostics": result.get("diagnostics") or {},
        "usage": result.get("usage") or {},
        "options": {k: v for k, v in (request.get("options") or {}).items() if v is not None},
        "tags": metadata.get("tags") if isinstance(metadata, dict) else None,
        "supplied_rewards": supplied.get("rewards") if isinstance(supplied, dict) else None,
        "scoring": result.get("scoring") if isinstance(result.get("scoring"), dict) else None,
    }


# --- rewards over steps -------------------------------------------------------------------

WIDTH, HEIGHT = 1180, 400
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 24, 20, 52


@dataclass
class StepBox:
    step: int
    groups: int
    stats: RewardStats
    # geometry, in SVG user units
    x: float = 0.0
    half: float = 0.0
    y_min: float = 0.0
    y_q1: float = 0.0
    y_median: float = 0.0
    y_q3: float = 0.0
    y_max: float = 0.0
    y_mean: float = 0.0


@dataclass
class Plot:
    boxes: list[StepBox]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = MARGIN_LEFT
    right: int = WIDTH - MARGIN_RIGHT
    top: int = MARGIN_TOP
    bottom: int = HEIGHT - MARGIN_BOTTOM
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    mean_path: str = ""
    empty_steps: list[int] = field(default_factory=list)  # steps whose rewards are all null


def _nice_step(span: float, target: int) -> float:
    """A 1/2/5 x 10^k tick spacing giving about ``target`` ticks over ``span``."""
    raw = span / max(target, 1)
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def rewards_plot(rows: list[dict]) -> Plot:
    """Per training step, the distribution of all rewards of the step's groups (min, quartiles,
    median, max as a box plot, the mean as a dot joined across steps), laid out for an SVG."""
    by_step: dict[int, list] = {}
    groups: dict[int, int] = {}
    for row in rows:
        by_step.setdefault(row["step"], []).extend(row.get("rewards") or [])
        groups[row["step"]] = groups.get(row["step"], 0) + 1
    boxes = [StepBox(step=s, groups=groups[s], stats=reward_stats(by_step[s])) for s in sorted(by_step)]
    plot = Plot(boxes=[b for b in boxes if b.stats.values], empty_steps=[b.step for b in boxes if not b.stats.values])
    if not plot.boxes:
        return plot

    lo = min(0.0, min(b.stats.minimum for b in plot.boxes))
    hi = max(1.0, max(b.stats.maximum for b in plot.boxes))
    first, last = plot.boxes[0].step, plot.boxes[-1].step
    inner = plot.right - plot.left
    pad = inner * 0.03

    def x_of(step: int) -> float:
        if last == first:
            return plot.left + inner / 2
        return plot.left + pad + (step - first) / (last - first) * (inner - 2 * pad)

    def y_of(value: float) -> float:
        return plot.bottom - (value - lo) / (hi - lo) * (plot.bottom - plot.top)

    slots = last - first + 1
    half = max(1.0, min(14.0, (inner - 2 * pad) / slots * 0.35))
    for box in plot.boxes:
        s = box.stats
        box.x, box.half = x_of(box.step), half
        box.y_min, box.y_q1, box.y_median = y_of(s.minimum), y_of(s.q1), y_of(s.median)
        box.y_q3, box.y_max, box.y_mean = y_of(s.q3), y_of(s.maximum), y_of(s.mean)
    plot.mean_path = " ".join(f"{b.x:.1f},{b.y_mean:.1f}" for b in plot.boxes)

    spacing = max(1, int(_nice_step(last - first, 10))) if last > first else 1
    start = math.ceil(first / spacing) * spacing
    plot.x_ticks = [(x_of(s), str(s)) for s in range(start, last + 1, spacing)] if last > first else [(x_of(first), str(first))]
    y_spacing = _nice_step(hi - lo, 5)
    value = math.ceil(lo / y_spacing) * y_spacing
    while value <= hi + 1e-9:
        plot.y_ticks.append((y_of(value), f"{value:g}"))
        value += y_spacing
    return plot
