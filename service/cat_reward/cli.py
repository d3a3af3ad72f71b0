"""``cat-reward``: serve the API, run the local CPU judge, or both.

    cat-reward up                     prepare + start the CPU vLLM judge, then serve against it
    cat-reward serve [--host --port]  serve with settings from CAT_* environment variables
    cat-reward judge [--port]         prepare (once) and run the CPU vLLM judge in the foreground
    cat-reward hash-key KEY SCOPES    print a CAT_API_KEYS_FILE line (sha256 of the key)
    cat-reward openapi [PATH]         write the OpenAPI document
    cat-reward eval --data SRC        single sample vs majority vs synthesis on your data (see --help)
    cat-reward judge-quality --data SRC --json PATH   the reward against labels (pairwise, pointwise)
    cat-reward score IN -o OUT        score a file of groups (JSONL, Parquet, hf:), resumably
    cat-reward select OUT -o SFT      pick rollouts from a score output (--keep-top K, --min-reward X)
    cat-reward loadtest --judges 1,2,4  one training step of groups against simulated GPU judges (see --help)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
from pathlib import Path

from .settings import DEFAULT_JUDGE_PORT, Settings


def tune_gc(settings: Settings) -> None:
    """Make the garbage collector cheap for a serving process (CAT_GC_GEN0_THRESHOLD).

    A reward allocates many short-lived containers (JSON of the LLM answers, verdicts, the
    response), so with Python's default threshold of 700 the collector runs every few
    milliseconds and scans the whole heap, modules included, on each older-generation pass.
    Measured with ``bench/service_overhead.py`` (64 concurrent groups): the collector took 24% of
    the process's CPU; with start-up objects frozen and a threshold of 10000, 2-5%.
    Objects still die as soon as they are unreferenced; only cycles wait a little longer."""
    if settings.gc_gen0_threshold:
        gc.collect()
        gc.freeze()  # modules, classes, settings: never garbage, no longer scanned
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(settings.gc_gen0_threshold, older, oldest)


def served_app():
    """The app factory of each worker process (``--workers`` > 1)."""
    from .api import create_app

    settings = Settings()
    app = create_app(settings)
    tune_gc(settings)
    return app


def _serve(host: str, port: int, settings: Settings, workers: int = 1) -> None:
    import uvicorn

    from .api import create_app
    from .observability import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    common = dict(host=host, port=port, log_config=None, access_log=False)  # our middleware logs requests
    # The proxies whose X-Forwarded-Proto/-For uvicorn applies (the dashboard's Secure cookie needs the former).
    common["forwarded_allow_ips"] = settings.forwarded_allow_ips
    if workers > 1:
        # Every worker writes its metrics here; /metrics on any worker aggregates them all.
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            import tempfile

            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cat-reward-metrics-")
        # Each worker builds its app from the environment, so settings travel through it.
        uvicorn.run("cat_reward.cli:served_app", factory=True, workers=workers, **common)
    else:
        app = create_app(settings)
        tune_gc(settings)
        uvicorn.run(app, **common)


def _auth_refusal(settings: Settings) -> str | None:
    """Why this server must not start, or None."""
    from .auth import AuthConfigError, load_keys, open_mode_unrequested

    if open_mode_unrequested(settings):
        return (
            "no API keys configured. Set CAT_API_KEYS (KEY:SCOPE[+SCOPE], scopes rewards, audit, admin) or "
            "CAT_API_KEYS_FILE, or CAT_AUTH=open to serve without authentication."
        )
    try:
        load_keys(settings)
    except AuthConfigError as exc:
        return str(exc)
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings()
    refusal = _auth_refusal(settings)
    if refusal:
        print(f"[cat-reward] {refusal}", file=sys.stderr)
        return 2
    _serve(args.host, args.port, settings, args.workers)
    return 0


def cmd_hash_key(args: argparse.Namespace) -> int:
    from .auth import _scopes, digest

    _scopes(args.scopes, "scopes")
    print(f"sha256:{digest(args.key)} {args.scopes}" + (f" {args.name}" if args.name else ""))
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    from . import local_judge

    settings = Settings()
    paths = local_judge.prepare(settings.judge_home, settings.judge_pip_args)
    if args.prepare_only:
        return 0
    command = local_judge.server_command(paths, args.host, args.port, dtype=settings.judge_dtype)
    os.execve(command[0], command, local_judge.server_env(paths))
    return 0  # not reached


def _port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def cmd_up(args: argparse.Namespace) -> int:
    from . import local_judge

    for name, port in (("judge", args.judge_port), ("service", args.port)):
        if _port_in_use("127.0.0.1", port):
            print(
                f"[cat-reward] port {port} (the {name}'s) is already in use on 127.0.0.1. If a judge is "
                "already running there, use `cat-reward serve`; otherwise pick another port "
                f"with --{'judge-port' if name == 'judge' else 'port'}.",
                file=sys.stderr,
            )
            return 2
    settings = Settings()
    paths = local_judge.prepare(settings.judge_home, settings.judge_pip_args)
    process = local_judge.start(paths, "127.0.0.1", args.judge_port, start_new_session=True)
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so the
    # judge below is stopped too, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    base_url = f"http://127.0.0.1:{args.judge_port}/v1"
    try:
        waited = local_judge.wait_ready(base_url, process)
        print(f"[cat-reward] CPU judge ready at {base_url} after {waited:.0f} s", file=sys.stderr, flush=True)
        os.environ.setdefault("CAT_ANCHOR_BASE_URL", base_url)
        if args.host in ("127.0.0.1", "localhost", "::1") and not (
            os.environ.get("CAT_API_KEYS") or os.environ.get("CAT_API_KEYS_FILE")
        ):
            # The local quick start: loopback only, no keys. Said explicitly, and said aloud.
            os.environ.setdefault("CAT_AUTH", "open")
            print("[cat-reward] open mode (no API keys) on loopback: the local quick start", file=sys.stderr, flush=True)
        os.environ.setdefault("CAT_ANCHOR_MODEL", local_judge.SERVED_MODEL)
        _serve(args.host, args.port, Settings())
    finally:
        local_judge.stop(process)
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from .api import create_app

    document = json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"
    if args.path == "-":
        sys.stdout.write(document)
    else:
        Path(args.path).write_text(document)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the history database to the newest schema (the Kubernetes migration Job), or with
    --wait only wait until something else has (each replica's init container)."""
    import asyncio

    from .storage.engine import to_async_url
    from .storage.migrate import head_revision, upgrade_when_reachable, wait_for_head

    settings = Settings()
    url = settings.history_url
    try:
        to_async_url(url)
    except ValueError as exc:
        print(f"[cat-reward] CAT_DATABASE_URL: {exc}", file=sys.stderr)
        return 2
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)

    def said(reason: str) -> None:
        print(f"[cat-reward] waiting: {reason}", file=sys.stderr, flush=True)

    if args.wait:
        reason = asyncio.run(wait_for_head(url, args.timeout, on_wait=said))
        if reason:
            print(f"[cat-reward] gave up after {args.timeout:g} s: {reason}", file=sys.stderr)
            return 1
        print("[cat-reward] the history database is at this code's schema or newer", file=sys.stderr)
        return 0
    try:
        asyncio.run(upgrade_when_reachable(url, args.timeout, on_wait=said))
    except Exception as exc:  # noqa: BLE001 - the Job's log says why, its exit code says that it failed
        print(f"[cat-reward] migration failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"[cat-reward] the history database is at revision {head_revision()}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation.command import main as eval_main

    return eval_main(args)


def cmd_score(args: argparse.Namespace) -> int:
    from .api.rows import ROWS
    from .offline.command import score_main

    return score_main(args, rows=ROWS)


def cmd_select(args: argparse.Namespace) -> int:
    from .offline.command import select_main

    return select_main(args)


def cmd_loadtest(args: argparse.Namespace) -> int:
    from .loadtest.runner import main as loadtest_main

    return loadtest_main(args)


def cmd_judge_quality(args: argparse.Namespace) -> int:
    from .evaluation.judge_quality import main as judge_quality_main

    return judge_quality_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cat-reward", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    judge = sub.add_parser("judge", help="run the local CPU vLLM judge (SmolLM2-135M-Instruct)")
    judge.add_argument("--host", default="127.0.0.1")
    judge.add_argument("--port", type=int, default=DEFAULT_JUDGE_PORT)
    judge.add_argument("--prepare-only", action="store_true", help="install and convert, then exit")
    judge.set_defaults(func=cmd_judge)

    up = sub.add_parser("up", help="start the local CPU judge, then serve against it")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--judge-port", type=int, default=DEFAULT_JUDGE_PORT)
    up.set_defaults(func=cmd_up)

    hash_key = sub.add_parser("hash-key", help="print a CAT_API_KEYS_FILE line for a key")
    hash_key.add_argument("key")
    hash_key.add_argument("scopes", help="rewards, audit, admin, joined by '+'")
    hash_key.add_argument("--name", default=None)
    hash_key.set_defaults(func=cmd_hash_key)

    openapi = sub.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("path", nargs="?", default="openapi.json")
    openapi.set_defaults(func=cmd_openapi)

    migrate = sub.add_parser(
        "migrate",
        help="bring the history database (CAT_DATABASE_URL) to the newest schema",
        description="Run the history migrations (alembic upgrade head) under a database lock, retrying while "
        "the database is unreachable. With --wait, migrate nothing: wait until the database is at the newest "
        "schema (a replica's init container, while a migration Job runs), or at a newer one (a rollback). "
        "Exit 0 when done, 1 otherwise.",
    )
    migrate.add_argument("--wait", action="store_true", help="only wait until the schema is at head")
    migrate.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the database (300)")
    migrate.set_defaults(func=cmd_migrate)

    evaluate = sub.add_parser(
        "eval",
        help="measure single sample vs majority vote vs synthesis on MATH-500- or HealthBench-form data",
        description="Sample G rollouts per item from a policy endpoint and score them with this service's "
        "pipeline (anchor, judge and math-verify from CAT_* settings). Writes OUT/results.json, "
        "OUT/results.md and OUT/score_vs_G.png. A policy API key is read from CAT_EVAL_POLICY_API_KEY.",
    )
    evaluate.add_argument("--data", required=True, help="a JSONL path, builtin:math, builtin:healthbench or hf:NAME[:SPLIT]")
    evaluate.add_argument("--format", choices=["math", "healthbench"], default=None, help="default: from the keys")
    evaluate.add_argument("--limit", type=int, default=None, help="the first N items only")
    evaluate.add_argument("--policy-url", default=None, help="OpenAI-compatible base URL; default: the anchor's")
    evaluate.add_argument("--policy-model", default=None, help="default: the first model GET /models lists")
    evaluate.add_argument("--group-sizes", default="1,2,4,8", help="comma-separated G values (default 1,2,4,8)")
    evaluate.add_argument("--temperature", type=float, default=0.7, help="policy sampling temperature (0.7)")
    evaluate.add_argument("--top-p", type=float, default=None)
    evaluate.add_argument("--max-tokens", type=int, default=1024, help="per rollout (1024)")
    evaluate.add_argument("--seed", type=int, default=None, help="passed to the policy and the anchor (on a CPU vLLM of your own, see evaluation/README.md)")
    evaluate.add_argument("--concurrency", type=int, default=4, help="items in flight (4)")
    evaluate.add_argument("--out", default="eval-results", help="output directory (eval-results)")
    evaluate.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    evaluate.set_defaults(func=cmd_eval)

    from .offline.command import add_score_arguments, add_select_arguments

    score = sub.add_parser(
        "score",
        help="score a file of groups (JSONL, Parquet, hf:), resumably, in process or through --url",
        description="Score every group of a file (one POST /rewards body per row) and write one JSON line per group "
        "to OUT: id, rewards, flags, rubric id. Rerun with the same OUT to resume: groups already in OUT are "
        "skipped. Failed groups and bad rows go to OUT.failures.jsonl; the exit code is 1 when there are any.",
    )
    add_score_arguments(score)
    score.set_defaults(func=cmd_score)

    select = sub.add_parser(
        "select",
        help="pick rollouts from a score output as SFT data (--keep-top K per prompt, --min-reward X)",
        description="Read an output of cat-reward score and write the selected rollouts (prompt, completion, reward) "
        "as JSONL. No judge call: rerun with another threshold at no cost.",
    )
    add_select_arguments(select)
    select.set_defaults(func=cmd_select)

    from .loadtest.runner import __doc__ as loadtest_doc, add_arguments as loadtest_arguments

    loadtest = sub.add_parser(
        "loadtest",
        help="a training step's groups at once against simulated GPU judges (no router, router, replicas)",
        description=loadtest_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    loadtest_arguments(loadtest)
    loadtest.set_defaults(func=cmd_loadtest)

    quality = sub.add_parser(
        "judge-quality",
        help="score the service's reward against labels: RewardBench-style pairs and labelled verdicts",
        description="Pairwise JSONL {prompt, chosen, rejected, subset}: accuracy of reward(chosen) > reward(rejected) "
        "per subset and overall, per aggregation mode, with bootstrap 95%% intervals. Pointwise JSONL {prompt, "
        "response, criterion, label}: accuracy, AUC of P(yes), expected calibration error. Anchor and judge from "
        "CAT_* settings. Writes --json and a PNG (per-subset bars, reliability diagram).",
    )
    quality.add_argument(
        "--data", action="append", required=True,
        help="a JSONL path, builtin:pairwise, builtin:pointwise or hf:NAME[:SPLIT] (needs datasets); repeatable",
    )
    quality.add_argument("--json", required=True, metavar="PATH", help="write the report here")
    quality.add_argument("--png", default=None, metavar="PATH", help="the plot (default: beside --json)")
    quality.add_argument("--aggregations", default="fraction,soft", help="pairwise: modes compared on the same verdicts (fraction,soft)")
    quality.add_argument("--ensemble", default=None, help="verdict ensemble, JUDGE/PROMPT members comma-separated (default: CAT_VERDICT_ENSEMBLE)")
    quality.add_argument("--rubric-prompt", choices=["standard", "weighted"], default=None, help="pairwise: the rubric prompt")
    quality.add_argument("--limit", type=int, default=None, help="the first N items of each file")
    quality.add_argument("--concurrency", type=int, default=4, help="items in flight (4)")
    quality.add_argument("--seed", type=int, default=0, help="pair order and bootstrap resamples (0)")
    quality.add_argument("--llm-seed", type=int, default=None, help="seed passed to the anchor and judge (default: none)")
    quality.add_argument("--synthesis-max-tokens", type=int, default=None, help="pairwise: synthesis budget (default: settings)")
    quality.add_argument("--rubric-max-tokens", type=int, default=None, help="pairwise: rubric budget (default: settings)")
    quality.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    quality.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    quality.set_defaults(func=cmd_judge_quality)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
