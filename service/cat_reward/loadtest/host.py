"""What the machine itself did during a load-test step, so that a CPU figure can be read.

The service's CPU per group is measured in the service's own process time, but the same code
reads very differently on different machines: on the shared 2-vCPU VMs this project is measured
on, identical runs of one commit have read 8.7 ms per group on one machine and 14.7-19.3 ms on
another. Two readings tell such machines apart:

- **Steal** (``/proc/stat``, Linux): the time the hypervisor gave the machine's vCPUs to someone
  else while they had work. It is not charged to the service's process (the kernel subtracts it
  when it accounts ticks), but a host busy enough to steal also shares caches and cores with its
  other guests, and the work that does run runs slower. ``steal_share`` is steal over all the
  time the machine's vCPUs were busy or wanted to be.
- **A reference workload**: the process time of a fixed piece of pure-Python work shaped like a
  group's (strings built per rollout and criterion, JSON both ways, a regex over text, small
  dicts). A probe process (``ReferenceProbe``) runs it once a second through the step, so it
  meets the same host as the service does: on these VMs the same work read 9.4 ms at one moment
  and 16.7 ms a minute later. The median of its readings is the step's reference, and the
  service's CPU per group in units of it can be compared across machines and moments. The probe
  costs about 1.5% of one CPU.

A third reading is of the service itself: its threads' **context switches** over the step
(``/proc/<pid>/task/*/status``). A voluntary switch is a thread blocking: the event loop waiting
in epoll, a worker thread waiting for work, for an fsync, for a lock or the GIL; most are
followed, later, by a wake-up. An involuntary one is the thread preempted. On these VMs a wake-up
of an idle event loop costs 0.04-0.1 ms of CPU after a sleep of a few milliseconds and
0.12-0.19 ms after 20-100 ms (``bench/wakeup_cost.py``: the interpreter's working set is cold
again), so how often the service blocks per group is a large part of its CPU per group, and of
how that moves with the step's length.
"""

from __future__ import annotations

import json
import re
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path

STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_WORD = re.compile(r"\b(?:ignore|previous|instructions|verdict)\b", re.IGNORECASE)


def cpu_ticks(stat: Path = Path("/proc/stat")) -> dict[str, int] | None:
    """The machine's cumulative CPU ticks by kind (all CPUs), or None where /proc/stat is absent."""
    try:
        first = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    values = [int(v) for v in first[1 : 1 + len(STAT_FIELDS)]]
    values += [0] * (len(STAT_FIELDS) - len(values))  # old kernels lack the last columns
    return dict(zip(STAT_FIELDS, values))


def contention(before: dict[str, int] | None, after: dict[str, int] | None, clk_tck: int) -> dict | None:
    """Busy, idle and stolen seconds between two ``cpu_ticks`` readings, and the stolen share."""
    if before is None or after is None:
        return None
    delta = {name: after[name] - before[name] for name in STAT_FIELDS}
    busy = delta["user"] + delta["nice"] + delta["system"] + delta["irq"] + delta["softirq"]
    idle = delta["idle"] + delta["iowait"]
    steal = delta["steal"]
    wanted = busy + steal
    return {
        "busy_s": round(busy / clk_tck, 2),
        "idle_s": round(idle / clk_tck, 2),
        "steal_s": round(steal / clk_tck, 2),
        "steal_share": round(steal / wanted, 4) if wanted else 0.0,
    }


def context_switches(pid: int, proc: Path = Path("/proc")) -> dict[str, tuple[int, int]] | None:
    """(voluntary, involuntary) context switches of each live thread of ``pid``, by thread id; None
    where /proc has no such process."""
    threads: dict[str, tuple[int, int]] = {}
    try:
        tids = [entry.name for entry in (proc / str(pid) / "task").iterdir()]
    except OSError:
        return None
    for tid in tids:
        try:
            lines = (proc / str(pid) / "task" / tid / "status").read_text().splitlines()
        except OSError:  # the thread ended meanwhile
            continue
        counts = dict(line.split(":", 1) for line in lines if "ctxt_switches:" in line)
        try:
            threads[tid] = (int(counts["voluntary_ctxt_switches"]), int(counts["nonvoluntary_ctxt_switches"]))
        except (KeyError, ValueError):
            continue
    return threads


def switches_between(before: dict[str, tuple[int, int]] | None, after: dict[str, tuple[int, int]] | None) -> dict | None:
    """The switches between two ``context_switches`` readings, summed over threads. A thread that
    started in between counts from zero; one alive at the first reading that ended in between is
    lost, and ``threads_ended`` counts those (a thread that both started and ended in between is
    neither counted nor reported)."""
    if before is None or after is None:
        return None
    voluntary = sum(v - before.get(tid, (0, 0))[0] for tid, (v, _) in after.items())
    involuntary = sum(n - before.get(tid, (0, 0))[1] for tid, (_, n) in after.items())
    return {"voluntary": voluntary, "involuntary": involuntary, "threads": len(after),
            "threads_ended": len(set(before) - set(after))}


def reference_work(rollouts: int = 8, criteria: int = 8, rounds: int = 12) -> int:
    """A fixed piece of pure-Python work; returns a checksum so nothing is optimised away."""
    text = " ".join(f"step {i} follows since term {i * 7 % 13} cancels" for i in range(60))
    checksum = 0
    for r in range(rounds):
        prompts = [f"<response>{text[j:]}{r}</response>\n<criterion>criterion {c}</criterion>"
                   for j in range(rollouts) for c in range(criteria)]
        body = json.dumps({"model": "judge", "prompt": prompts, "max_tokens": 1, "seed": r})
        back = json.loads(body)
        scores = {i: {"yes": -0.1 * (i % 3), "no": -2.3} for i, _ in enumerate(back["prompt"])}
        checksum += sum(1 for s in scores.values() if s["yes"] > s["no"])
        checksum += len(_WORD.findall(text)) + len(body)
    return checksum


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name as the kernel reports it (Linux), or None."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


class ReferenceProbe:
    """A process that times ``reference_work`` every ``interval_s`` from ``start`` to ``stop``."""

    def __init__(self, interval_s: float = 1.0, env: dict[str, str] | None = None) -> None:
        self.interval_s = interval_s
        self.env = env  # the environment the probe runs in (None: this process's)
        self.readings: list[float] = []
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "cat_reward.loadtest.host", str(self.interval_s)],
            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True, env=self.env,
        )

    def stop(self) -> None:
        """Ends the probe and keeps its readings; a second call does nothing."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            out, _ = process.communicate(input="stop\n", timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        self.readings = [float(v) for v in out.split()]

    def summary(self) -> dict | None:
        """Median, min and max of the readings (ms) and their count, or None without any."""
        if not self.readings:
            return None
        return {"median_ms": round(statistics.median(self.readings), 2), "min_ms": round(min(self.readings), 2),
                "max_ms": round(max(self.readings), 2), "readings": len(self.readings)}


def _probe(interval_s: float) -> None:
    """The probe's loop: one reading at once, then one per interval; it ends as soon as stdin is
    written to or closed."""
    while True:
        started = time.process_time()
        reference_work()
        print(round(1000 * (time.process_time() - started), 3), flush=True)
        ready, _, _ = select.select([sys.stdin], [], [], interval_s)
        if ready:
            return


if __name__ == "__main__":
    _probe(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
