"""Bench (a): the service's own overhead, against an instant LLM stub.

Starts ``bench/stub_llm.py`` and a real ``cat-reward serve`` process (one worker) whose anchor
and judge point at the stub (CAT_DATA_DIR in a temporary folder: the SQLite history is
written as in production, and the in-process cache is on). Then posts rubric-mode groups
(G=8 rollouts, the stub's 8 criteria) to POST /rewards at 1, 8 and 64 concurrent groups, each
group with rollouts of its own (no cache hits). Measures groups/s, p50/p99 latency, the
service process's CPU time per group (user + system, from /proc), its resident memory, and
how many judge requests each group cost (the stub counts them).

    .venv/bin/python bench/service_overhead.py [--groups-per-level 100,400,1280]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from common import BENCH, calibration_ms, cpu_times, free_port, load_data, percentile, steal_share, table, write_results
from summarize import summarize

G = 8
N_CRITERIA = 8
LEVELS = (1, 8, 64)
CLK_TCK = os.sysconf("SC_CLK_TCK")
BENCH_KEY = "bench-" + os.urandom(8).hex()
AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / CLK_TCK


def memory_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def wait_http(url: str, timeout_s: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def payload(data: dict, k: int) -> dict:
    rollouts = [f"{r} (group {k}, rollout {i})" for i, r in enumerate(data["rollouts"][:G])]
    return {"prompt": data["prompt"], "rollouts": rollouts, "mode": "rubric", "options": {"seed": k % 5}}


async def run_level(base: str, data: dict, concurrency: int, groups: int, offset: int) -> dict:
    # The load comes from aiohttp, whose client costs a fraction of httpx's per request: on 2 cores
    # the load generator shares the machine with the service, and an httpx pool of 64 connections
    # saturated its own core and put a seconds-long tail on the latencies it measured.
    latencies: list[float] = []
    failures = 0
    queue = iter(range(offset, offset + groups))
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base_url=base, connector=connector, timeout=timeout, headers=AUTH) as client:

        async def worker():
            nonlocal failures
            for k in queue:
                started = time.perf_counter()
                async with client.post("/rewards", json=payload(data, k)) as response:
                    body = await response.json()
                latencies.append(time.perf_counter() - started)
                if response.status != 200 or any(r is None for r in body["rewards"]):
                    failures += 1
                elif len(body["rubric"]) != N_CRITERIA:
                    raise RuntimeError(f"expected {N_CRITERIA} criteria, got {len(body['rubric'])}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"wall_s": wall, "latencies": latencies, "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups-per-level", default="100,400,640", help="groups posted at 1, 8, 64 concurrent")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="runs per level; medians are reported")
    parser.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the service (variants)")
    parser.add_argument("--name", default="service_overhead", help="results file name")
    args = parser.parse_args()
    counts = [int(x) for x in args.groups_per_level.split(",")]
    data = load_data()

    stub_port, api_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="cat-bench-"))
    stub = subprocess.Popen(
        [sys.executable, str(BENCH / "stub_llm.py"), "--port", str(stub_port)],
        stdout=open(tmp / "stub.log", "w"), stderr=subprocess.STDOUT,
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CAT_")},
        "CAT_ANCHOR_BASE_URL": f"http://127.0.0.1:{stub_port}/v1",
        "CAT_DATA_DIR": str(tmp / "data"),
        "CAT_API_KEYS": f"{BENCH_KEY}:rewards",  # the production auth path, with one bench key
        **dict(item.split("=", 1) for item in args.env),
    }
    cat_reward = str(Path(sys.executable).with_name("cat-reward"))
    service = subprocess.Popen(
        [cat_reward, "serve", "--port", str(api_port), "--workers", "1"],
        env=env, cwd=tmp, stdout=open(tmp / "service.log", "w"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{api_port}"
    try:
        wait_http(f"http://127.0.0.1:{stub_port}/version", 30, stub)
        wait_http(f"{base}/readyz", 60, service)
        asyncio.run(run_level(base, data, 4, args.warmup, offset=10_000_000))
        levels = []
        offset = 0
        for concurrency, groups in zip(LEVELS, counts):
            if groups == 0:
                continue
            runs = []
            for _ in range(args.repeats):
                stub_before = httpx.get(f"http://127.0.0.1:{stub_port}/stats").json()
                cpu_before, times_before = cpu_seconds(service.pid), cpu_times()
                result = asyncio.run(run_level(base, data, concurrency, groups, offset))
                cpu = cpu_seconds(service.pid) - cpu_before
                steal = steal_share(times_before, cpu_times())
                stub_after = httpx.get(f"http://127.0.0.1:{stub_port}/stats").json()
                offset += groups
                judged = stub_after.get("/v1/completions", 0) - stub_before.get("/v1/completions", 0)
                chats = stub_after.get("/v1/chat/completions", 0) - stub_before.get("/v1/chat/completions", 0)
                runs.append({
                    "failures": result["failures"],
                    "groups_per_s": groups / result["wall_s"],
                    "p50_ms": 1000 * percentile(result["latencies"], 0.5),
                    "p99_ms": 1000 * percentile(result["latencies"], 0.99),
                    "cpu_ms_per_group": 1000 * cpu / groups,
                    "judge_requests_per_group": judged / groups,
                    "chat_requests_per_group": chats / groups,
                    "cpu_steal_share": steal,
                })
            mem = memory_mb(service.pid)
            level = {"concurrency": concurrency, "groups": groups, "runs": len(runs)}
            for key in runs[0]:
                values = [r[key] for r in runs]
                level[key] = sum(values) if key == "failures" else statistics.median(values)
            level["cpu_ms_per_group_runs"] = [r["cpu_ms_per_group"] for r in runs]
            level["rss_mb"], level["peak_rss_mb"] = mem["VmRSS"], mem["VmHWM"]
            levels.append(level)
            print(level, flush=True)
    finally:
        stop(service)
        stop(stub)

    by_c = {lv["concurrency"]: lv for lv in levels}
    calibration = calibration_ms()
    headers = ["concurrent groups", "groups", "groups/s", "p50 ms", "p99 ms", "CPU ms/group", "RSS MB", "peak RSS MB",
               "judge req/group", "chat req/group", "failures", "CPU steal"]
    rows = [[lv["concurrency"], lv["groups"], lv["groups_per_s"], lv["p50_ms"], lv["p99_ms"], lv["cpu_ms_per_group"],
             lv["rss_mb"], lv["peak_rss_mb"], lv["judge_requests_per_group"], lv["chat_requests_per_group"], lv["failures"],
             f"{100 * lv['cpu_steal_share']:.0f}%"]
            for lv in levels]
    markdown = "\n".join([
        f"### Service overhead against an instant stub (G={G}, n={N_CRITERIA}, rubric mode, 1 worker"
        + "".join(f", {item}" for item in args.env) + ")",
        "",
        table(headers, rows),
        "",
        "Median of the runs at each level (groups/s, latency, CPU). "
        "CPU ms/group: CPU time (user + system) of the `cat-reward serve` process over the run / groups. "
        "RSS: resident memory of that process after the level's runs. judge req/group: /v1/completions requests "
        "the stub received per group (verdict batches, shared across concurrent groups). CPU steal: share of the "
        "machine's CPU time its hypervisor took during the level (/proc/stat). "
        f"Machine: {os.cpu_count()} CPUs, calibration {calibration:.1f} ms (CPU time of a fixed pure-Python "
        "workload, `bench/common.py`; CPU figures from two machines compare after dividing by it).",
    ])
    write_results(
        args.name,
        {
            "G": G,
            "n": N_CRITERIA,
            "service_env": dict(item.split("=", 1) for item in args.env),
            "levels": levels,
            # The headline is the worst level (the target is a bound, whatever the load).
            "service_cpu_ms_per_group": max(lv["cpu_ms_per_group"] for lv in levels),
            "service_cpu_ms_per_group_by_concurrency": {lv["concurrency"]: lv["cpu_ms_per_group"] for lv in levels},
            "service_rss_mb": by_c.get(64, levels[-1])["rss_mb"],
        },
        markdown,
    )
    summarize()  # bench/results/summary.{json,md}


if __name__ == "__main__":
    main()
