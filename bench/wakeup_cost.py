"""Bench: what it costs the service's process to wake up, and what its history outbox costs per
record at a training step's pace (no LLM, one process, ~4 min).

Why: the load test's service CPU per group grows with the step's length for the same work (5.3
ms per group in a 2.2 s step, 11.7 ms in an 87 s one; bench/README), and its threads block and
wake about 22 times per group (``service_wakeups_per_group`` and ``service_switches`` in its
report). This measures the two parts of that on the machine at hand:

- **wake**: the process CPU (``getrusage``, user + system; the kernel samples the split per tick,
  so only the sum is reported) of one ``await asyncio.sleep(t)`` in an otherwise idle event loop,
  for sleeps of 2-100 ms, on the standard loop and on uvloop (the service's); up to 400 sleeps,
  and at most about 2 s of sleeping, per row. Only the wake-up is measured: there is no work
  between sleeps. (uvloop rounds a delay to whole milliseconds, so nothing shorter is a sleep.)
- **outbox**: ``HistoryStore.record`` on SQLite of a record shaped like the load test's (8
  rollouts of 2,000 characters and a result document; its JSON size is reported), one every
  ``--pace-ms`` (170: a 4-judge step's 5.9 groups/s, one record per group), with the outbox's
  ``synchronous=FULL`` (the default: a record is on disk, power loss included, before the reward
  is answered) and with ``NORMAL`` (WAL without the fsync per commit: safe from a process crash,
  not from a power loss), and the worker threads' voluntary context switches per record. The
  flusher drains every second, as in the service, into a SQLite history (itself FULL in both).
  The pace's own wake-ups, measured before and after the records, are subtracted.

    .venv/bin/python bench/wakeup_cost.py --json bench/results/wakeup_cost.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import string
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from cat_reward.loadtest import host
from common import machine, table

SLEEPS_MS = (2.0, 5.0, 20.0, 100.0)
RECORDS = 60
RUNS = 3


def _cpu() -> float:
    """This process's CPU seconds, user + system (the split is sampled per tick: only the sum holds)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _sleeps(seconds: float, count: int) -> float:
    """CPU microseconds per wake-up over ``count`` sleeps of ``seconds``."""
    await asyncio.sleep(0.05)
    before = _cpu()
    for _ in range(count):
        await asyncio.sleep(seconds)
    return (_cpu() - before) / count * 1e6


def wake_costs(progress) -> list[dict]:
    import uvloop

    rows = []
    for name, run in (("asyncio", asyncio.run), ("uvloop", uvloop.run)):
        for ms in SLEEPS_MS:
            count = max(20, min(400, int(2.0 / (ms / 1000))))
            readings = [run(_sleeps(ms / 1000, count)) for _ in range(RUNS)]
            rows.append({"loop": name, "sleep_ms": ms, "wakes": count, "cpu_us_per_wake": round(min(readings)),
                         "runs_us": [round(reading) for reading in readings]})
            progress.update()
    return rows


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_letters + "     ") for _ in range(n))


def _record(rng: random.Random) -> dict:
    result = {
        "record_id": uuid.uuid4().hex, "mode": "rubric", "rewards": [0.5] * 8, "flags": [],
        "rubric": {"criteria": [{"text": _text(rng, 120), "weight": 1.0} for _ in range(8)]},
        "reference": _text(rng, 3000),
        "verdicts": [[{"p_yes": 0.7, "met": True} for _ in range(8)] for _ in range(8)],
        "provenance": {"anchor_model": "judge", "judge_model": "judge", "prompt_version": "v"},
    }
    return {
        "id": result["record_id"], "created_at": datetime.now(timezone.utc).isoformat(), "prompt_hash": "0" * 16,
        "mode": "rubric", "run_id": None, "step": 1, "group_id": None, "anchor_model": "judge", "judge_model": "judge",
        "prompt_version": "v", "request": {"prompt": _text(rng, 300), "responses": [_text(rng, 2000) for _ in range(8)]},
        "result": result,
    }


def _worker_switches() -> dict[str, tuple[int, int]]:
    """This process's threads' context switches, the main thread's left out."""
    threads = host.context_switches(os.getpid()) or {}
    threads.pop(str(threading.main_thread().native_id), None)
    return threads


async def _paced(count: int, pace_s: float) -> float:
    """CPU seconds of ``count`` bare sleeps of ``pace_s``: the pace's own wake-ups."""
    before = _cpu()
    for _ in range(count):
        await asyncio.sleep(pace_s)
    return _cpu() - before


async def _outbox(synchronous: str, pace_s: float) -> dict:
    from cat_reward.storage import HistoryStore

    rng = random.Random(30)
    with tempfile.TemporaryDirectory(prefix="cat-wake-") as folder:
        store = await HistoryStore.open(f"sqlite:///{folder}/history.db", Path(folder) / "outbox.sqlite3",
                                        flush_interval_s=1.0)
        try:
            outbox = store._outbox  # a bench-only knob, not a setting: one connection, no other user yet
            with outbox._lock:
                outbox._conn.execute(f"PRAGMA synchronous={synchronous}")
                level = outbox._conn.execute("PRAGMA synchronous").fetchone()[0]
            assert level == {"FULL": 2, "NORMAL": 1}[synchronous], level
            records = [_record(rng) for _ in range(RECORDS)]
            size = statistics.median(len(json.dumps(r["request"])) + len(json.dumps(r["result"])) for r in records)
            await asyncio.sleep(1.2)
            idle = await _paced(RECORDS, pace_s)
            switches = _worker_switches()
            before = _cpu()
            for record in records:
                await store.record(record)
                await asyncio.sleep(pace_s)
            await asyncio.sleep(1.5)  # the last drain
            spent = _cpu() - before
            switched = host.switches_between(switches, _worker_switches())
            idle = (idle + await _paced(RECORDS, pace_s)) / 2  # the pace before and after, averaged
        finally:
            await store.close()
    return {"synchronous": synchronous, "records": RECORDS, "record_json_bytes": int(size),
            "cpu_ms_per_record": round((spent - idle) / RECORDS * 1000, 3),
            "pace_cpu_ms_per_record": round(idle / RECORDS * 1000, 3),
            "worker_switches_per_record": round(switched["voluntary"] / RECORDS, 1)}


def outbox_costs(progress, pace_s: float) -> list[dict]:
    rows = []
    for synchronous in ("FULL", "NORMAL"):
        readings = []
        for _ in range(RUNS):
            readings.append(asyncio.run(_outbox(synchronous, pace_s)))
            progress.update()
        median = statistics.median(r["cpu_ms_per_record"] for r in readings)
        rows.append({**min(readings, key=lambda r: abs(r["cpu_ms_per_record"] - median)),
                     "cpu_ms_per_record_runs": [r["cpu_ms_per_record"] for r in readings]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pace-ms", type=float, default=170.0, help="one history record every this many ms (170)")
    parser.add_argument("--json", metavar="PATH", help="write the results here (and a .md table beside it)")
    args = parser.parse_args()
    pace_s = args.pace_ms / 1000
    with tqdm(total=2 * len(SLEEPS_MS) + 2 * RUNS, desc="wake-up and outbox costs", file=sys.stderr) as progress:
        wakes = wake_costs(progress)
        outbox = outbox_costs(progress, pace_s)
    markdown = "\n".join([
        f"One `await asyncio.sleep(t)` in an idle loop: process CPU per wake-up (best of {RUNS}; every run after it).",
        "",
        table(["loop", "sleep ms", "wakes", "CPU us per wake", "runs"],
              [[r["loop"], r["sleep_ms"], r["wakes"], r["cpu_us_per_wake"], ", ".join(map(str, r["runs_us"]))] for r in wakes]),
        "",
        f"History outbox on SQLite, one record ({outbox[0]['record_json_bytes']:,} bytes of JSON) every {args.pace_ms:g} ms "
        f"({RECORDS} records; the pace's own wake-ups subtracted; the median of {RUNS} runs):",
        "",
        table(["outbox synchronous", "CPU ms per record", "runs", "the pace's own CPU ms per record", "worker-thread switches per record"],
              [[r["synchronous"], r["cpu_ms_per_record"], ", ".join(map(str, r["cpu_ms_per_record_runs"])),
                r["pace_cpu_ms_per_record"], r["worker_switches_per_record"]] for r in outbox]),
    ])
    print(markdown)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"machine": {**machine(), "cpu_model": host.cpu_model()}, "date": time.strftime("%Y-%m-%d"),
                   "pace_ms": args.pace_ms, "wake": wakes, "outbox": outbox}
        path.write_text(json.dumps(payload, indent=2) + "\n")
        path.with_suffix(".md").write_text(markdown + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
