"""Bench: `cat-reward score` on a file of 1k groups against the instant LLM stub, in process and
through a running service (--url), and the cost of a rerun over a finished file.

Starts ``bench/stub_llm.py``; writes a JSONL file of rubric-mode groups (G=8 rollouts of the
bench prompt, each group with rollouts of its own, so no cache hits); then runs, as real
processes, each with its own temporary CAT_DATA_DIR (SQLite history on, as by default):
    in process   cat-reward score IN -o OUT --concurrency C             (anchor/judge: the stub)
    --url        cat-reward serve (1 worker, one API key) + cat-reward score IN -o OUT --url ...
    rerun        the in-process command again on its finished OUT (every group skipped)
Measures groups/s (from the command's --json summary: first group sent to last answer), wall
time of each command, and the CPU seconds of the score process (and of the service).

    .venv/bin/python bench/offline_score.py [--groups 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import BENCH, calibration_ms, free_port, load_data, table, write_results

G = 8
CLK_TCK = os.sysconf("SC_CLK_TCK")
BENCH_KEY = "bench-" + os.urandom(8).hex()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


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


def write_input(path: Path, groups: int) -> None:
    data = load_data()
    with path.open("w") as handle:
        for k in range(groups):
            rollouts = [f"{r} (group {k}, rollout {i})" for i, r in enumerate(data["rollouts"][:G])]
            handle.write(json.dumps({"id": f"g{k}", "prompt": data["prompt"], "rollouts": rollouts, "mode": "rubric"}) + "\n")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def score(env: dict, tmp: Path, name: str, data: Path, concurrency: int, stub: str, *extra: str) -> dict:
    out, summary = tmp / f"{name}.jsonl", tmp / f"{name}.json"
    stub_before = httpx.get(f"{stub}/stats").json()
    cat_reward = str(Path(sys.executable).with_name("cat-reward"))
    cpu_before, started = children_cpu(), time.perf_counter()
    done = subprocess.run(
        [cat_reward, "score", str(data), "-o", str(out), "--concurrency", str(concurrency), "--no-progress",
         "--json", str(summary), *extra],
        env=env, cwd=tmp, capture_output=True, text=True, timeout=1800,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}")
    result = json.loads(summary.read_text())
    run = result["run"]
    stub_after = httpx.get(f"{stub}/stats").json()
    requests = {path: stub_after.get(path, 0) - stub_before.get(path, 0) for path in ("/v1/chat/completions", "/v1/completions")}
    scored = max(run["scored"], 1)
    return {
        "chat_requests_per_group": round(requests["/v1/chat/completions"] / scored, 2),
        "judge_requests_per_group": round(requests["/v1/completions"] / scored, 2),
        "groups_scored": run["scored"],
        "already_done": run["already_done"],
        "failed": result["failed_groups"],
        "groups_per_s": run["groups_per_s"],
        "wall_s": round(wall, 2),
        "score_cpu_s": round(children_cpu() - cpu_before, 2),
        "null_rewards": result["summary"]["null_rewards"],
        "groups_in_output": result["summary"]["groups"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--name", default="offline_score", help="results file name")
    args = parser.parse_args()

    load = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="cat-bench-offline-"))
    data = tmp / "groups.jsonl"
    write_input(data, args.groups)
    stub_port, api_port = free_port(), free_port()
    stub = subprocess.Popen(
        [sys.executable, str(BENCH / "stub_llm.py"), "--port", str(stub_port)],
        stdout=open(tmp / "stub.log", "w"), stderr=subprocess.STDOUT,
    )
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    llm = {"CAT_ANCHOR_BASE_URL": f"http://127.0.0.1:{stub_port}/v1"}
    service = None
    results = {}
    try:
        stub_url = f"http://127.0.0.1:{stub_port}"
        wait_http(f"{stub_url}/version", 30, stub)
        in_process_env = {**base_env, **llm, "CAT_DATA_DIR": str(tmp / "data-in-process")}
        results["in_process"] = score(in_process_env, tmp, "in_process", data, args.concurrency, stub_url)
        print("in process:", results["in_process"], flush=True)
        results["rerun"] = score(in_process_env, tmp, "in_process", data, args.concurrency, stub_url)
        print("rerun:", results["rerun"], flush=True)

        service_env = {**base_env, **llm, "CAT_DATA_DIR": str(tmp / "data-service"), "CAT_API_KEYS": f"{BENCH_KEY}:rewards"}
        service = subprocess.Popen(
            [str(Path(sys.executable).with_name("cat-reward")), "serve", "--port", str(api_port), "--workers", "1"],
            env=service_env, cwd=tmp, stdout=open(tmp / "service.log", "w"), stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{api_port}"
        wait_http(f"{base}/readyz", 60, service)
        service_cpu = cpu_seconds(service.pid)
        url_env = {**base_env, "CAT_SCORE_API_KEY": BENCH_KEY, "CAT_DATA_DIR": str(tmp / "data-client")}
        results["url"] = score(url_env, tmp, "url", data, args.concurrency, stub_url, "--url", base)
        results["url"]["service_cpu_s"] = round(cpu_seconds(service.pid) - service_cpu, 2)
        print("--url:", results["url"], flush=True)
    finally:
        if service is not None:
            stop(service)
        stop(stub)

    for name, result in results.items():
        expected_scored = 0 if name == "rerun" else args.groups
        if result["failed"] or result["groups_scored"] != expected_scored or result["groups_in_output"] != args.groups:
            raise RuntimeError(f"{name}: not every group scored exactly once: {result}")
    headers = ["run", "groups scored", "skipped (done)", "groups/s", "wall s", "score CPU s", "service CPU s",
               "chat req/group", "judge req/group", "failures"]
    labels = {"in_process": "in process", "url": "--url (cat-reward serve)", "rerun": "rerun on the finished output"}
    rows = [[labels[n], r["groups_scored"], r["already_done"], r["groups_per_s"], r["wall_s"], r["score_cpu_s"],
             r.get("service_cpu_s"), r["chat_requests_per_group"] if r["groups_scored"] else None,
             r["judge_requests_per_group"] if r["groups_scored"] else None, r["failed"]] for n, r in results.items()]
    markdown = "\n".join([
        f"### Offline scoring: `cat-reward score` on {args.groups} groups (G={G}, rubric mode, the stub's 8 criteria), "
        f"--concurrency {args.concurrency}, against the instant stub LLM",
        "",
        table(headers, rows),
        "",
        f"groups/s: from the first group sent to the last answer (the command's --json summary); wall s: the whole "
        f"command, start-up and summary included. CPU calibration {calibration_ms()} ms; load average "
        f"{load[0]:.1f} before, {os.getloadavg()[0]:.1f} after (the machine's other work).",
    ])
    write_results(args.name, {"groups": args.groups, "group_size": G, "concurrency": args.concurrency,
                              "load_average": [round(load[0], 2), round(os.getloadavg()[0], 2)], "results": results}, markdown)


if __name__ == "__main__":
    main()
