"""Bench: what it costs the service's process to wake up, and what its history outbox costs per
record at a training step's pace (no LLM, one process, ~1 min).

Why: the load test's service CPU per group grows with the step's length for the same work (5.3
ms per group in a 2.2 s step, 11.7 ms in an 87 s one; bench/README), and its threads wake about
20 times per group (``service_wakeups_per_group`` and ``service_switches`` in its report). This
measures the two parts of that on the machine at hand:

- **wake**: the process CPU (user and system, ``getrusage``) of one ``await asyncio.sleep(t)``
  in an otherwise idle event loop, for several ``t``, on the standard loop and on uvloop (the
  service's). Only the wake-up is measured: there is no work between sleeps.
- **outbox**: ``HistoryStore.record`` of a record shaped like the load test's (~30 KB: 8 rollouts
  of 2 KB, the result document) on SQLite, one every 20 ms (about a 4-judge step's pace of 6
  groups/s, rounded up), with the outbox's ``synchronous=FULL`` (the default: a record is on disk,
  power loss included, before the reward is answered) and with ``NORMAL`` (WAL without the fsync
  per commit: safe from a process crash, not from a power loss), and the worker threads'
  voluntary context switches per record. The flusher drains every second, as in the service.

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
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from common import machine, table

SLEEPS_MS = (0.5, 2.0, 5.0, 20.0, 100.0)
RECORDS = 200
PACE_S = 0.02


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _sleeps(seconds: float, count: int) -> tuple[float, float]:
    await asyncio.sleep(0.05)
    user, system = _cpu()
    for _ in range(count):
        await asyncio.sleep(seconds)
    user2, system2 = _cpu()
    return (user2 - user) / count * 1e6, (system2 - system) / count * 1e6


def wake_costs(progress) -> list[dict]:
    import uvloop

    rows = []
    for name, run in (("asyncio", asyncio.run), ("uvloop", uvloop.run)):
        for ms in SLEEPS_MS:
            count = max(20, min(400, int(2.0 / (ms / 1000))))  # about 2 s of sleeping each
            readings = [run(_sleeps(ms / 1000, count)) for _ in range(3)]
            user, system = min(readings, key=sum)
            rows.append({"loop": name, "sleep_ms": ms, "wakes": count, "user_us": round(user), "system_us": round(system),
                         "cpu_us_per_wake": round(user + system)})
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


def _worker_switches() -> int:
    """Voluntary context switches of this process's threads other than the main one."""
    total = 0
    for status in Path("/proc/self/task").glob("*/status"):
        if status.parent.name == str(os.getpid()):
            continue
        for line in status.read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split(":")[1])
    return total


async def _outbox(synchronous: str) -> dict:
    from cat_reward.storage import HistoryStore

    rng = random.Random(30)
    folder = Path(tempfile.mkdtemp(prefix="cat-wake-"))
    store = await HistoryStore.open(f"sqlite:///{folder / 'history.db'}", folder / "outbox.sqlite3", flush_interval_s=1.0)
    if synchronous != "FULL":
        store._outbox._conn.execute(f"PRAGMA synchronous={synchronous}")  # a bench-only knob, not a setting
    records = [_record(rng) for _ in range(RECORDS)]
    await asyncio.sleep(1.2)
    idle_user, idle_system = _cpu()
    for _ in range(RECORDS):
        await asyncio.sleep(PACE_S)  # the pace alone, to subtract
    idle = sum(_cpu()) - idle_user - idle_system
    switches = _worker_switches()
    user, system = _cpu()
    for record in records:
        await store.record(record)
        await asyncio.sleep(PACE_S)
    await asyncio.sleep(1.5)  # the last drain
    spent = sum(_cpu()) - user - system - idle  # the records, their commits and drains, without the pace
    switched = _worker_switches() - switches
    await store.close()
    return {"synchronous": synchronous, "records": RECORDS, "cpu_ms_per_record": round(spent / RECORDS * 1000, 3),
            "worker_switches_per_record": round(switched / RECORDS, 1)}


def outbox_costs(progress) -> list[dict]:
    rows = []
    for synchronous in ("FULL", "NORMAL"):
        readings = [asyncio.run(_outbox(synchronous)) for _ in range(3)]
        progress.update()
        median = statistics.median(r["cpu_ms_per_record"] for r in readings)
        rows.append({**min(readings, key=lambda r: abs(r["cpu_ms_per_record"] - median)),
                     "cpu_ms_per_record_runs": [r["cpu_ms_per_record"] for r in readings]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="PATH", help="write the results here (and a .md table beside it)")
    args = parser.parse_args()
    with tqdm(total=2 * len(SLEEPS_MS) + 2, desc="wake-up and outbox costs", file=sys.stderr) as progress:
        wakes = wake_costs(progress)
        outbox = outbox_costs(progress)
    markdown = "\n".join([
        "One `await asyncio.sleep(t)` in an idle loop: process CPU per wake-up (best of 3).",
        "",
        table(["loop", "sleep ms", "wakes", "user us", "system us", "CPU us per wake"],
              [[r["loop"], r["sleep_ms"], r["wakes"], r["user_us"], r["system_us"], r["cpu_us_per_wake"]] for r in wakes]),
        "",
        f"History outbox on SQLite, one ~30 KB record every {PACE_S * 1000:g} ms ({RECORDS} records; the pace's own "
        "wake-ups subtracted; the median of 3 runs):",
        "",
        table(["outbox synchronous", "CPU ms per record", "runs", "worker-thread switches per record"],
              [[r["synchronous"], r["cpu_ms_per_record"], ", ".join(map(str, r["cpu_ms_per_record_runs"])),
                r["worker_switches_per_record"]] for r in outbox]),
    ])
    print(markdown)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "wake": wakes, "outbox": outbox}
        path.write_text(json.dumps(payload, indent=2) + "\n")
        path.with_suffix(".md").write_text(markdown + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
