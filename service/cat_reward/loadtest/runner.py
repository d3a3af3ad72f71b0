"""``cat-reward loadtest``: one GRPO step's worth of groups, at once, against simulated GPU judges.

For each judge count M in ``--judges`` (e.g. ``1,2,4``) it starts, on loopback only:

- M simulated judges (``cat_reward.loadtest.simjudge``, one process each, the cost model of a
  4-8B judge on one H100 unless told otherwise);
- with ``--router``, vllm-router in front of them, with the flags of docker/router.Dockerfile;
- ``--replicas`` R processes of ``cat-reward serve`` whose anchor and judge are the router's URL,
  or the judges' URL list (the service's own endpoint choice); with R > 1 or ``--mode sample`` the
  replicas share Redis (``--redis-url``), as in production;

then sends S groups x G rollouts at once (``--mode group``: one ``POST /rewards`` per group;
``--mode sample``: one ``POST /rewards/samples`` per rollout, all S x G at once, spread over the
replicas) and measures the step: wall time, groups/s, judge busy fraction, prefix-cache hit
rate, p50/p99 per group, the service's CPU per group, errors and timeouts, and what the machine
did meanwhile (``host.py``: steal, and the time of a fixed reference workload, so that CPU
figures from different machines can be compared). ``--kill-judge T``
SIGKILLs judge 1 T seconds into the step (``--restart-judge T2``: and starts it again), for the
failover test.

Rollout lengths are drawn per rollout from a log-normal distribution (``--rollout-median-tokens``
400, ``--rollout-sigma`` 0.6, clipped to [32, 4096] tokens, 4 characters a token); the judge's own
generation lengths come from the simulated judge (see its docstring). Everything is bounded:
``--timeout`` caps the step, every process is stopped at the end.

    cat-reward loadtest --judges 1,2,4 --groups 256 -G 8 -n 8 --json bench/results/loadtest.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import host, simjudge

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROUTER_FLAGS = [  # docker/router.Dockerfile's ENTRYPOINT flags, bar the listen addresses (docs/router.md)
    "--health-check-interval-secs", "2", "--health-check-timeout-secs", "2", "--cb-timeout-duration-secs", "5",
    "--worker-startup-timeout-secs", "60", "--worker-startup-check-interval", "1", "--log-level", "warning",
]
DEFAULT_POLICY = "sticky_least_loaded"
STEAL_WARNING = 0.10  # a step over which the host stole more than this is flagged on stderr
WORDS = (
    "the answer follows from the first step because each term cancels and what remains is the sum of "
    "two squares which we check by expanding both sides then comparing coefficients so the claim holds"
).split()


# --- argument parsing --------------------------------------------------------------------------


def judge_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes judge counts like 1,2,4; got {text!r}") from None
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"every judge count must be at least 1; got {text!r}")
    if any(c > 16 for c in counts):
        raise argparse.ArgumentTypeError(f"at most 16 simulated judges on one machine; got {text!r}")
    return counts


def positive(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} takes a whole number; got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1; got {value}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judges", type=judge_counts, default=[1, 2, 4], help="simulated judge counts, e.g. 1,2,4 (each >= 1)")
    parser.add_argument("--groups", "-S", type=positive("--groups"), default=256, help="groups in the step (256)")
    parser.add_argument("-G", dest="group_size", type=positive("-G"), default=8, help="rollouts per group (8)")
    parser.add_argument("-n", dest="criteria", type=positive("-n"), default=8, help="rubric criteria per group (8)")
    parser.add_argument("--mode", choices=["group", "sample", "batch"], default="group",
                        help="group: POST /rewards per group; sample: POST /rewards/samples per rollout; batch: "
                        "POST /rewards/batch with --batch-groups groups each, all at once (verl's group manager)")
    parser.add_argument("--batch-groups", type=positive("--batch-groups"), default=64,
                        help="groups per /rewards/batch request in batch mode (64, as verl's CatGroupRewardManager)")
    parser.add_argument("--router", action="store_true", help="vllm-router in front of the judges")
    parser.add_argument("--router-policy", default=DEFAULT_POLICY, help=f"vllm-router --policy ({DEFAULT_POLICY})")
    parser.add_argument("--replicas", type=positive("--replicas"), default=1, help="service replicas (1)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="shared by replicas / sample mode")
    parser.add_argument("--service-env", action="append", default=[], metavar="KEY=VALUE", help="extra service setting")
    parser.add_argument("--kill-judge", type=float, default=None, metavar="SECONDS", help="SIGKILL judge 1 this long into the step")
    parser.add_argument("--restart-judge", type=float, default=None, metavar="SECONDS", help="start it again at this time")
    parser.add_argument("--rollout-median-tokens", type=float, default=400.0)
    parser.add_argument("--rollout-sigma", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0, help="seed of the rollout texts and lengths")
    parser.add_argument("--repeats", type=positive("--repeats"), default=1,
                        help="steps per judge count (1); the report's row is the run with the median service CPU, "
                        "every run's figures are listed beside it (identical runs differ by 1-2 ms/group)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="bound on one step, seconds (1800)")
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH", help="write the report here (PNG beside it)")
    parser.add_argument("--label", default=None, help="name of this configuration in the report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--no-plot", action="store_true", help="no PNG")
    parser.add_argument("--logs", default=None, metavar="DIR", help="keep every process's log here (default: a temporary folder, removed)")
    cost = parser.add_argument_group("simulated judge cost model (cat_reward.loadtest.simjudge)")
    simjudge.add_cost_arguments(cost)


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def total_switches(readings) -> dict | None:
    """The replicas' context switches over the step, summed (``host.switches_between`` each; the
    service processes' own threads: ``cat-reward serve --workers 1`` starts no children)."""
    readings = list(readings)
    if not readings or any(r is None for r in readings):
        return None
    return {key: sum(r[key] for r in readings) for key in readings[0]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that are still alive."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        if self.process is None:
            return
        self.kill(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.process.wait(timeout=10)


async def wait_http(url: str, proc: Proc, timeout_s: float, session) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.process is not None and proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}; log: {proc.log}\n{proc.log.read_text()[-2000:]}")
        try:
            async with session.get(url) as response:
                if response.status == 200:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        await asyncio.sleep(0.25)
    raise TimeoutError(f"{proc.name} not ready at {url} within {timeout_s:.0f} s; log: {proc.log}")


# --- the step ----------------------------------------------------------------------------------


def rollout_text(rng: random.Random, median: float, sigma: float) -> str:
    tokens = max(32, min(4096, round(median * math.exp(rng.gauss(0.0, sigma)))))
    words, size = [], 0
    while size < tokens * simjudge.CHARS_PER_TOKEN:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def make_groups(args, run_id: str) -> list[dict]:
    rng = random.Random(args.seed)
    groups = []
    for k in range(args.groups):
        rollouts = [f"Attempt {i} of problem {k}: " + rollout_text(rng, args.rollout_median_tokens, args.rollout_sigma)
                    for i in range(args.group_size)]
        groups.append({
            "prompt": f"[{run_id}] Problem {k}: show that the sum of the first {k + 3} odd numbers is a square.",
            "rollouts": rollouts,
            "mode": "rubric",
            "options": {"num_criteria": args.criteria, "max_criteria": args.criteria, "seed": k},
        })
    return groups


@dataclass
class StepResult:
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failed_groups: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    timeouts: int = 0
    null_rewards: int = 0


def _error(result: StepResult, kind: str) -> None:
    result.errors[kind] = result.errors.get(kind, 0) + 1


async def run_step(args, bases: list[str], headers: dict, groups: list[dict], run_id: str, progress, on_start=None) -> StepResult:
    import aiohttp

    result = StepResult()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    counter = iter(range(1 << 30))

    def base() -> str:
        return bases[next(counter) % len(bases)]

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

        async def post(path: str, body: dict) -> tuple[int, dict | None]:
            async with session.post(base() + path, json=body) as response:
                payload = await response.json(content_type=None)
                return response.status, payload

        async def one_group(k: int, group: dict) -> None:
            started = time.perf_counter()
            ok = True
            try:
                if args.mode == "group":
                    status, body = await post("/rewards", group)
                    if status != 200:
                        ok = False
                        _error(result, f"http_{status}")
                    elif any(r is None for r in body["rewards"]):
                        ok = False
                        result.null_rewards += sum(r is None for r in body["rewards"])
                else:
                    spec = {"id": f"{run_id}-{k}", "size": len(group["rollouts"])}
                    answers = await asyncio.gather(*(
                        post("/rewards/samples", {
                            "prompt": group["prompt"], "samples": [{"rollout": r, "index": i}], "group": spec,
                            "mode": group["mode"], "options": group["options"],
                        })
                        for i, r in enumerate(group["rollouts"])
                    ))
                    for status, body in answers:
                        if status != 200:
                            ok = False
                            _error(result, f"http_{status}")
                        elif any(r is None for r in body["rewards"]) or body["group"]["partial"]:
                            ok = False
                            result.null_rewards += sum(r is None for r in body["rewards"])
            except asyncio.TimeoutError:
                ok = False
                result.timeouts += 1
            except aiohttp.ClientError as exc:
                ok = False
                _error(result, type(exc).__name__)
            result.latencies.append(time.perf_counter() - started)
            if not ok:
                result.failed_groups += 1
            if progress is not None:
                progress.update(1)

        async def one_batch(chunk: list[dict]) -> None:
            # verl's group manager: POST /rewards/batch, max_groups_per_request groups a request,
            # the requests at once; each group's latency is its request's
            started = time.perf_counter()
            failed = set()
            try:
                status, body = await post("/rewards/batch", {"groups": chunk})
                if status != 200:
                    failed = set(range(len(chunk)))
                    _error(result, f"http_{status}")
                else:
                    for i, item in enumerate(body["results"]):
                        if not item.get("ok"):
                            failed.add(i)
                            _error(result, f"item_{(item.get('error') or {}).get('type', 'failed')}")
                        elif any(r is None for r in item["result"]["rewards"]):
                            failed.add(i)
                            result.null_rewards += sum(r is None for r in item["result"]["rewards"])
            except asyncio.TimeoutError:
                failed = set(range(len(chunk)))
                result.timeouts += 1
            except aiohttp.ClientError as exc:
                failed = set(range(len(chunk)))
                _error(result, type(exc).__name__)
            latency = time.perf_counter() - started
            result.latencies.extend([latency] * len(chunk))
            result.failed_groups += len(failed)
            if progress is not None:
                progress.update(len(chunk))

        started = time.perf_counter()
        if on_start is not None:
            on_start(started)
        if args.mode == "batch":
            size = args.batch_groups
            await asyncio.gather(*(one_batch(groups[i : i + size]) for i in range(0, len(groups), size)))
        else:
            await asyncio.gather(*(one_group(k, g) for k, g in enumerate(groups)))
        result.wall_s = time.perf_counter() - started
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- one configuration at one judge count -------------------------------------------------------


async def measure(args, judges: int, tmp: Path) -> dict:
    import aiohttp

    cost = simjudge.cost_from(args)
    run_id = uuid.uuid4().hex[:10]
    python = sys.executable
    cat_reward = str(Path(python).with_name("cat-reward"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    service_path = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [service_path, env.get("PYTHONPATH", "")] if p)
    procs: list[Proc] = []
    judge_procs: list[Proc] = []
    judge_ports = [free_port() for _ in range(judges)]
    cost_argv = []
    for name, value in vars(cost).items():
        cost_argv += ["--" + name.replace("_", "-"), str(value)]
    for i, port in enumerate(judge_ports):
        judge_procs.append(Proc(f"judge-{i + 1}", [python, "-m", "cat_reward.loadtest.simjudge", "--port", str(port), *cost_argv],
                                env, tmp / f"judge-{i + 1}.log"))
    procs += judge_procs
    judge_urls = [f"http://127.0.0.1:{p}" for p in judge_ports]
    router = None
    if args.router:
        router_bin = str(Path(python).with_name("vllm-router"))
        router_port, metrics_port = free_port(), free_port()
        router = Proc("router", [router_bin, "--host", "127.0.0.1", "--port", str(router_port), "--policy", args.router_policy,
                                 "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port), *ROUTER_FLAGS,
                                 "--worker-urls", *judge_urls], env, tmp / "router.log")
        procs.append(router)
        llm_urls = [f"http://127.0.0.1:{router_port}/v1"]
        # one URL for all the judges: the service's per-URL bounds grow with them
        router_env = {"CAT_LLM_SERVERS_PER_URL": str(judges)}
    else:
        router_env = {}
        llm_urls = [f"{u}/v1" for u in judge_urls]
    key = "load-" + uuid.uuid4().hex
    service_env = {
        **env,
        "CAT_ANCHOR_BASE_URL": ",".join(llm_urls),
        "CAT_ANCHOR_MODEL": simjudge.MODEL,
        "CAT_API_KEYS": f"{key}:rewards",
        "CAT_CACHE_PREFIX": f"load{run_id}",
        "CAT_LOG_LEVEL": "WARNING",
        **router_env,
    }
    shared = args.replicas > 1 or args.mode == "sample"
    if shared:
        service_env["CAT_REDIS_URL"] = args.redis_url
    for item in args.service_env:
        name, _, value = item.partition("=")
        service_env[name] = value
    services = []
    for r in range(args.replicas):
        port = free_port()
        data = tmp / f"data-{r}"
        data.mkdir(exist_ok=True)
        services.append((Proc(f"service-{r + 1}", [cat_reward, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              {**service_env, "CAT_DATA_DIR": str(data)}, tmp / f"service-{r + 1}.log"), f"http://127.0.0.1:{port}"))
    procs += [s for s, _ in services]
    bases = [b for _, b in services]

    async def stats(session, url: str) -> dict | None:
        try:
            async with session.get(f"{url}/stats") as response:
                return await response.json()
        except Exception:  # noqa: BLE001 - a killed judge has no stats
            return None

    probe = host.ReferenceProbe(env=env)  # the judges' environment: cat_reward on PYTHONPATH
    try:
        for p in judge_procs:
            p.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for p, url in zip(judge_procs, judge_urls):
                await wait_http(f"{url}/health", p, 60, session)
            if router is not None:
                router.start()
                await wait_http(llm_urls[0].removesuffix("/v1") + "/v1/models", router, 90, session)
            for s, _ in services:
                s.start()
            for s, b in services:
                await wait_http(f"{b}/readyz", s, 120, session)
            # one small group per replica first: capability probes, template probes, connections
            warm = make_groups(argparse.Namespace(**{**vars(args), "groups": len(services), "seed": args.seed + 10_000}), run_id + "w")
            warm_args = argparse.Namespace(**{**vars(args), "mode": "group"})
            warm_result = await run_step(warm_args, bases, {"Authorization": f"Bearer {key}"}, warm, run_id + "w", None)
            if warm_result.failed_groups:
                raise RuntimeError(f"warm-up failed: {warm_result}; logs in {tmp}")
            before = [await stats(session, u) for u in judge_urls]
        probe.start()  # the machine's speed through the step
        ticks_before = host.cpu_ticks()
        cpu_before = [cpu_seconds(s.process.pid) for s, _ in services]
        switches_before = [host.context_switches(s.process.pid) for s, _ in services]
        router_cpu_before = cpu_seconds(router.process.pid) if router else 0.0
        groups = make_groups(args, run_id)
        progress = None
        if not args.no_progress:
            try:
                from tqdm import tqdm

                progress = tqdm(total=len(groups), desc=f"{judges} judge(s)", unit="group", file=sys.stderr, leave=False)
            except ImportError:
                progress = None

        failover: list[asyncio.Task] = []

        def on_start(_started: float) -> None:
            if args.kill_judge is None:
                return

            async def fault() -> None:
                await asyncio.sleep(args.kill_judge)
                judge_procs[0].kill(signal.SIGKILL)
                if args.restart_judge is not None:
                    await asyncio.sleep(max(0.0, args.restart_judge - args.kill_judge))
                    judge_procs[0].start()

            failover.append(asyncio.get_running_loop().create_task(fault()))

        step = await asyncio.wait_for(
            run_step(args, bases, {"Authorization": f"Bearer {key}"}, groups, run_id, progress, on_start),
            timeout=args.timeout + 30,
        )
        for task in failover:
            await task
        if progress is not None:
            progress.close()
        cpu = sum(cpu_seconds(s.process.pid) for s, _ in services) - sum(cpu_before)
        switches = total_switches(
            host.switches_between(before, host.context_switches(s.process.pid))
            for before, (s, _) in zip(switches_before, services)
        )
        machine = host.contention(ticks_before, host.cpu_ticks(), CLK_TCK)
        probe.stop()
        router_cpu = (cpu_seconds(router.process.pid) - router_cpu_before) if router else None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            after = [await stats(session, u) for u in judge_urls]
    finally:
        probe.stop()
        for p in reversed(procs):
            p.stop()

    per_judge = []
    for i, (b, a) in enumerate(zip(before, after)):
        if b is None or a is None:
            per_judge.append({"judge": i + 1, "alive_at_end": a is not None})
            continue
        per_judge.append({
            "judge": i + 1,
            "alive_at_end": True,
            "busy_s": a["busy_s"] - b["busy_s"],
            "busy_fraction": (a["busy_s"] - b["busy_s"]) / step.wall_s,
            "sequences": a["sequences"] - b["sequences"],
            "prompt_tokens": a["prompt_tokens"] - b["prompt_tokens"],
            "cached_tokens": a["cached_tokens"] - b["cached_tokens"],
            "decode_tokens": a["decode_tokens"] - b["decode_tokens"],
            "engine_steps": a["steps"] - b["steps"],
            "requests": {p: a["requests"].get(p, 0) - b["requests"].get(p, 0) for p in a["requests"]
                         if p.startswith("/v1/") and a["requests"].get(p, 0) - b["requests"].get(p, 0)},
            "with_session_id": a["session_ids"] - b["session_ids"],
            "max_running": a["max_running"],
            "max_waiting": a["max_waiting"],
        })
    measured = [j for j in per_judge if "busy_s" in j]
    prompt_tokens = sum(j["prompt_tokens"] for j in measured)
    cached = sum(j["cached_tokens"] for j in measured)
    lat = step.latencies
    reference = probe.summary()
    return {
        "judges": judges,
        "groups": args.groups,
        "G": args.group_size,
        "n": args.criteria,
        "mode": args.mode,
        "router": args.router_policy if args.router else None,
        "replicas": args.replicas,
        "step_wall_s": round(step.wall_s, 3),
        "groups_per_s": round(args.groups / step.wall_s, 3),
        "judge_busy_fraction": round(statistics.mean(j["busy_fraction"] for j in measured), 3) if measured else None,
        "prefix_hit_rate": round(cached / prompt_tokens, 4) if prompt_tokens else None,
        "p50_group_s": round(percentile(lat, 0.5), 3),
        "p99_group_s": round(percentile(lat, 0.99), 3),
        "service_cpu_s": round(cpu, 3),
        "service_cpu_ms_per_group": round(1000 * cpu / args.groups, 2),
        "service_cpu_share_of_step": round(cpu / step.wall_s, 4),
        "router_cpu_s": round(router_cpu, 3) if router_cpu is not None else None,
        "service_wakeups_per_group": round(switches["voluntary"] / args.groups, 1) if switches else None,
        "service_switches": switches,
        "host_reference_ms": reference["median_ms"] if reference else None,
        "service_cpu_per_group_in_reference_units": round(1000 * cpu / args.groups / reference["median_ms"], 3) if reference else None,
        "host_reference": reference,
        "host_steal_share": machine["steal_share"] if machine else None,
        "host_cpu": machine,
        "failed_groups": step.failed_groups,
        "errors": step.errors,
        "timeouts": step.timeouts,
        "null_rewards": step.null_rewards,
        "judge_killed_at_s": args.kill_judge,
        "judge_restarted_at_s": args.restart_judge,
        "per_judge": per_judge,
    }


# --- report ------------------------------------------------------------------------------------


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    xs = [r["judges"] for r in runs]
    ys = [r["step_wall_s"] for r in runs]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(xs, ys, marker="o", label=report["label"])
    if runs:
        base = runs[0]["step_wall_s"] * runs[0]["judges"]
        ideal = [base / x for x in xs]
        ax.plot(xs, ideal, linestyle="--", color="grey", label="ideal (1/M)")
    ax.set_xlabel("simulated judges M")
    ax.set_ylabel("step wall time (s)")
    ax.set_xticks(xs)
    ax.set_title(f"S={report['config']['groups']} G={report['config']['G']} n={report['config']['n']}, {report['config']['mode']} mode")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


SPREAD = ("step_wall_s", "service_cpu_ms_per_group", "service_cpu_share_of_step", "prefix_hit_rate", "p99_group_s",
          "failed_groups", "timeouts", "host_reference_ms", "host_steal_share", "service_wakeups_per_group",
          "service_switches")


def median_run(repeats: list[dict]) -> dict:
    """One judge count's row: the run whose service CPU is the median (the lower one of an even
    count), with ``repeats`` and, under ``spread``, every run's figures in the order they ran.
    ``failed_groups_all_runs`` sums every run's failed groups: none is hidden by the pick."""
    if len(repeats) == 1:
        return repeats[0]
    ordered = sorted(repeats, key=lambda r: r["service_cpu_ms_per_group"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["repeats"] = len(repeats)
    row["spread"] = {name: [r[name] for r in repeats] for name in SPREAD}
    row["spread"]["errors"] = [sum(r["errors"].values()) for r in repeats]
    row["failed_groups_all_runs"] = sum(r["failed_groups"] for r in repeats)
    return row


def label_of(args) -> str:
    if args.label:
        return args.label
    parts = [f"router {args.router_policy}" if args.router else "URL list"]
    if args.replicas > 1:
        parts.append(f"{args.replicas} replicas")
    parts.append(f"{args.mode} mode" + (f" ({args.batch_groups} groups a request)" if args.mode == "batch" else ""))
    return ", ".join(parts)


def main(args: argparse.Namespace) -> int:
    if args.restart_judge is not None and args.kill_judge is None:
        print("cat-reward loadtest: --restart-judge needs --kill-judge", file=sys.stderr)
        return 2
    runs = []
    with tempfile.TemporaryDirectory(prefix="cat-load-") as tmp_dir:
        for judges in args.judges:
            repeats = []
            for repeat in range(args.repeats):
                tmp = Path(args.logs or tmp_dir) / (f"m{judges}" + (f"-r{repeat + 1}" if args.repeats > 1 else ""))
                tmp.mkdir(parents=True, exist_ok=True)
                run = asyncio.run(measure(args, judges, tmp))
                repeats.append(run)
                print(json.dumps({k: v for k, v in run.items() if k != "per_judge"}), flush=True)
                if (run["host_steal_share"] or 0) > STEAL_WARNING:
                    print(f"cat-reward loadtest: the hypervisor took {100 * run['host_steal_share']:.0f}% of the CPU time "
                          "this machine asked for during the step (steal, /proc/stat): a contended host, so the CPU "
                          "figures read high; compare runs by service_cpu_per_group_in_reference_units", file=sys.stderr)
            runs.append(median_run(repeats))
    for run in runs:
        run["step_ratio_vs_first"] = round(run["step_wall_s"] / runs[0]["step_wall_s"], 3)
    config = {
        "groups": args.groups, "G": args.group_size, "n": args.criteria, "mode": args.mode,
        "batch_groups": args.batch_groups if args.mode == "batch" else None,
        "router": args.router_policy if args.router else None, "replicas": args.replicas,
        "rollout_tokens": {"distribution": "lognormal", "median": args.rollout_median_tokens, "sigma": args.rollout_sigma,
                           "clip": [32, 4096]},
        "cost_model": vars(simjudge.cost_from(args)),
        "service_env": args.service_env, "repeats": args.repeats,
        "kill_judge_s": args.kill_judge, "restart_judge_s": args.restart_judge,
    }
    report = {"label": label_of(args), "config": config, "runs": runs, "machine": {"cpus": os.cpu_count(), "cpu_model": host.cpu_model(), "python": sys.version.split()[0]},
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        if not args.no_plot:
            plot(report, path.with_suffix(".png"))
    failed = sum(r.get("failed_groups_all_runs", r["failed_groups"]) for r in runs)
    return 0 if failed == 0 else 1
