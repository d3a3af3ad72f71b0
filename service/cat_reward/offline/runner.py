"""The loop of ``cat-reward score``: read rows, skip the groups already done, score the rest with
at most ``concurrency`` in flight, retry what may succeed later, write each group's line once.

A row goes one of these ways, each counted (``RunStats``), none silently:
    bad row        unreadable, not a valid group, or over the service's limits: reported with its
                   line number and written to the failures file (``--strict``: the run stops)
    already done   its key has a line in OUT (an earlier run scored it)
    earlier failure  its key failed in an earlier run (scored again with ``--retry-failed``)
    duplicate      its key appeared earlier in this input (same id and request): scored once
    scored         a line in OUT
    failed         an error after its retries: a line in the failures file, the exit code says so
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .inputs import BadRow, FieldMap, Source, body_of, group_key
from .scorers import GroupFailed
from .store import OutputStore


@dataclass
class RunStats:
    rows: int = 0
    scored: int = 0
    failed: int = 0
    bad_rows: int = 0
    already_done: int = 0
    earlier_failures: int = 0
    duplicates: int = 0
    retries: int = 0
    stopped_at_line: int | None = None  # --strict: the bad row that stopped the run
    elapsed_s: float = 0.0
    scoring_s: float = 0.0  # from the first group sent to the last answer

    @property
    def groups_per_s(self) -> float | None:
        return round(self.scored / self.scoring_s, 2) if self.scoring_s > 0 and self.scored else None

    def to_json(self) -> dict:
        return {**asdict(self), "groups_per_s": self.groups_per_s}


class StrictStop(Exception):
    pass


class _PlainProgress:
    """A line on stderr every few seconds, when tqdm is not installed (or no bar is wanted)."""

    def __init__(self, total: int | None, file, interval_s: float = 5.0) -> None:
        self.total, self.file, self.n, self.interval_s = total, file, 0, interval_s
        self.started = self.last = time.monotonic()
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.file is not None and now - self.last >= self.interval_s:
            self.last = now
            rate = self.n / max(now - self.started, 1e-9)
            print(f"score: {self.n}/{self.total or '?'} groups, {rate:.1f}/s {self.postfix}", file=self.file, flush=True)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        pass


def progress_bar(total: int | None, enabled: bool, file):
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            return _PlainProgress(total, file)
        return tqdm(total=total, desc="score", unit="group", file=file, dynamic_ncols=True, mininterval=0.5, smoothing=0.1)
    return _PlainProgress(total, None)


def result_line(number: int, group_id: str | None, key: str, body: dict, document: dict) -> dict:
    """One line of OUT: the group's id, its texts, and what it was given."""
    details = document.get("details") or []
    diagnostics = document.get("diagnostics") or {}
    return {
        "key": key,
        "id": group_id,
        "line": number,
        "prompt": body["prompt"],
        "rollouts": body["rollouts"],
        "rewards": document["rewards"],
        "errors": [d.get("error") for d in details],  # why a reward is null, per rollout
        "flags": document.get("flags") or [],
        "rollout_flags": [d.get("flags") or [] for d in details],
        "zero_variance": diagnostics.get("zero_variance"),
        "mode": document.get("mode"),
        "aggregator": document.get("aggregator"),
        "reference": document.get("reference"),
        "reference_answer": document.get("reference_answer"),
        "rubric_id": document.get("rubric_id"),  # GET /rubrics/<id> (with a history)
        "record_id": document.get("record_id"),
        "provenance": document.get("provenance"),
        "llm_calls": (document.get("usage") or {}).get("llm_calls"),
    }


async def run(
    source: Source,
    store: OutputStore,
    scorer,
    *,
    fields: FieldMap | None = None,
    defaults: dict[str, Any] | None = None,
    concurrency: int = 8,
    retries: int = 2,
    retry_failed: bool = False,
    strict: bool = False,
    backoff_s: float = 1.0,
    progress: bool = True,
    progress_file=None,
    report=None,
) -> RunStats:
    """Score ``source`` into ``store`` with ``scorer`` (entered by the caller). ``report`` gets one
    message per bad row (default: stderr)."""
    fields = fields or FieldMap()
    stats = RunStats()
    started = time.perf_counter()
    first_sent: float | None = None
    last_done = started
    report = report or (lambda text: print(f"[cat-reward score] {text}", file=sys.stderr, flush=True))
    bar = progress_bar(source.total, progress, progress_file or sys.stderr)
    seen: set[str] = set()
    pending: set[asyncio.Task] = set()

    def show() -> None:
        bar.set_postfix_str(f"failed={stats.failed} bad={stats.bad_rows}", refresh=False)

    async def one(number: int, group_id: str | None, key: str, request, body: dict) -> None:
        nonlocal last_done
        attempt = 0
        while True:
            try:
                document = await scorer.score(request, key)
                break
            except GroupFailed as failure:
                error = failure
            except Exception as exc:  # noqa: BLE001 - recorded as this group's failure, never a 0
                error = GroupFailed("internal_error", f"{type(exc).__name__}: {exc}")
            if error.retryable and attempt < retries:
                attempt += 1
                stats.retries += 1
                await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
                continue
            store.write_failure(
                {"kind": "group", "key": key, "id": group_id, "line": number, "attempts": attempt + 1, "error": error.document()}
            )
            stats.failed += 1
            last_done = time.perf_counter()
            bar.update(1)
            show()
            return
        store.write_result(result_line(number, group_id, key, body, document))
        stats.scored += 1
        last_done = time.perf_counter()
        bar.update(1)

    def bad(number: int, message: str) -> None:
        stats.bad_rows += 1
        store.write_failure({"kind": "bad_row", "key": None, "id": None, "line": number, "error": {"type": "bad_row", "message": message}})
        report(f"line {number}: {message} (skipped)" if not strict else f"line {number}: {message}")
        bar.update(1)
        show()
        if strict:
            stats.stopped_at_line = number
            raise StrictStop(number)

    async def drain(limit: int) -> None:
        nonlocal pending
        while len(pending) > limit:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # failures are recorded inside; anything here is a bug: raise it

    show()
    try:
        for row in source:
            stats.rows += 1
            if row.record is None:
                bad(row.number, row.error or "unreadable row")
                continue
            try:
                group_id, body = body_of(row.record, fields, defaults)
                request = scorer.rows.validate(body)
                scorer.check(request)
            except BadRow as exc:
                bad(row.number, str(exc))
                continue
            body = scorer.rows.normalized(request)
            key = group_key(group_id, body)
            if key in store.done:
                stats.already_done += 1
                bar.update(1)
                continue
            if key in seen:
                stats.duplicates += 1
                report(f"line {row.number}: the same group as an earlier line (id and request); scored once")
                bar.update(1)
                continue
            if key in store.failed and not retry_failed:
                stats.earlier_failures += 1
                bar.update(1)
                continue
            seen.add(key)
            await drain(concurrency - 1)
            if first_sent is None:
                first_sent = time.perf_counter()
            pending.add(asyncio.ensure_future(one(row.number, group_id, key, request, body)))
    except StrictStop:
        pass
    finally:
        try:
            await drain(0)
        finally:
            for task in pending:
                task.cancel()
            bar.close()
    stats.elapsed_s = round(time.perf_counter() - started, 3)
    if first_sent is not None:
        stats.scoring_s = round(last_done - first_sent, 3)
    return stats
