"""How fast vllm-router uses a judge again after it was killed and restarted: our flags vs the
router's defaults.

Two simulated judges (cat_reward.loadtest.simjudge, answering in ~1 ms) behind vllm-router; a
client sends verdict-shaped completions at about 40 requests/s, each with a new X-Session-ID (so
every policy may pick either judge). Judge 2 is SIGKILLed, started again on the same port 3 s
later, and the bench measures the time from its restart (its /health answers) to the first
request the router sends it, and how many client requests failed meanwhile. Loopback only;
each variant stops after --max-wait seconds.

    .venv/bin/python bench/router_comeback.py [--repeats 2] [--json bench/results/router_comeback.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "service"))

from cat_reward.loadtest.runner import ROUTER_FLAGS, DEFAULT_POLICY  # noqa: E402

OURS = ["--policy", DEFAULT_POLICY, *ROUTER_FLAGS]
DEFAULTS = ["--policy", DEFAULT_POLICY, "--log-level", "warning"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT / "service"), os.environ.get("PYTHONPATH", "")] if p)}
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


async def until_ok(session: aiohttp.ClientSession, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(url)


async def completions(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(f"{url}/stats") as response:
            return (await response.json())["requests"].get("/v1/completions", 0)
    except (aiohttp.ClientError, ValueError, KeyError):
        return -1


async def one_run(flags: list[str], tmp: Path, max_wait_s: float) -> dict:
    python = sys.executable
    ports = [free_port(), free_port()]
    judge_argv = [[python, "-m", "cat_reward.loadtest.simjudge", "--port", str(p), "--time-scale", "0.01"] for p in ports]
    judges = [start(argv, tmp / f"judge-{i}.log") for i, argv in enumerate(judge_argv)]
    router_port, metrics_port = free_port(), free_port()
    router = start([str(Path(python).with_name("vllm-router")), "--host", "127.0.0.1", "--port", str(router_port),
                    "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port), *flags,
                    "--worker-urls", *[f"http://127.0.0.1:{p}" for p in ports]], tmp / "router.log")
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    base = f"http://127.0.0.1:{router_port}"
    sent = failed = 0
    stop_load = asyncio.Event()
    body = {"model": "sim-judge-8b", "prompt": ["Response: ok\nCriterion: fine\nAnswer:"], "max_tokens": 1, "logprobs": 0}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            for url in urls:
                await until_ok(session, f"{url}/health", 30)
            await until_ok(session, f"{base}/v1/models", 60)

            async def load() -> None:
                nonlocal sent, failed
                while not stop_load.is_set():
                    try:
                        async with session.post(f"{base}/v1/completions", json=body,
                                                headers={"X-Session-ID": uuid.uuid4().hex}) as response:
                                await response.read()
                                failed += response.status != 200
                    except aiohttp.ClientError:
                        failed += 1
                    sent += 1
                    await asyncio.sleep(0.1)

            workers = [asyncio.create_task(load()) for _ in range(4)]
            await asyncio.sleep(2)
            before_kill = await completions(session, urls[1])
            stop(judges[1], signal.SIGKILL)
            killed_at = time.monotonic()
            failed_before = failed
            await asyncio.sleep(3)
            judges[1] = start(judge_argv[1], tmp / "judge-1.log")
            await until_ok(session, f"{urls[1]}/health", 30)
            back_at = time.monotonic()
            used_at = None
            while time.monotonic() - back_at < max_wait_s:
                if await completions(session, urls[1]) > 0:  # a fresh process: any request is new
                    used_at = time.monotonic()
                    break
                await asyncio.sleep(0.1)
            stop_load.set()
            await asyncio.gather(*workers)
        return {
            "requests_to_judge2_before_kill": before_kill,
            "down_s": round(back_at - killed_at, 2),
            "comeback_s": round(used_at - back_at, 2) if used_at else None,
            "comeback_bound_s": max_wait_s,
            "requests_sent": sent,
            "failed_requests": failed,
            "failed_after_kill": failed - failed_before,
        }
    finally:
        stop(router)
        for judge in judges:
            stop(judge)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-wait", type=float, default=120.0, help="give up on a comeback after this long (s)")
    parser.add_argument("--json", default=str(BENCH / "results" / "router_comeback.json"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="cat-comeback-") as tmp:
        for name, flags in (("ours", OURS), ("router_defaults", DEFAULTS)):
            runs = []
            for r in range(args.repeats):
                folder = Path(tmp) / f"{name}-{r}"
                folder.mkdir()
                runs.append(asyncio.run(one_run(flags, folder, args.max_wait)))
                print(name, runs[-1], flush=True)
            comebacks = [run["comeback_s"] for run in runs if run["comeback_s"] is not None]
            results[name] = {"flags": flags, "runs": runs,
                             "median_comeback_s": statistics.median(comebacks) if comebacks else None}
    report = {"bench": "router_comeback", "router": "vllm-router 0.1.17", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "results": results}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v["median_comeback_s"] for k, v in results.items()}))


if __name__ == "__main__":
    main()
