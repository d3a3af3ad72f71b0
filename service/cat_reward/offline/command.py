"""``cat-reward score`` and ``cat-reward select``: argument handling, summary, exit codes.

Exit codes of ``score``: 0 every row scored; 1 some groups failed (see the failures file) or
some rows were bad (skipped, reported); 2 the run could not start (arguments, settings, input,
output) or ``--strict`` stopped it at a bad row; 130 interrupted (Ctrl-C): rerun to resume.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(command: str, message: str, code: int = EXIT_USAGE) -> int:
    print(f"[cat-reward {command}] {message}", file=sys.stderr, flush=True)
    return code


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a JSONL or Parquet file (one group per row), or hf:NAME[:SPLIT] with datasets installed")
    parser.add_argument("-o", "--out", required=True, help="output JSONL; rerun with the same OUT to resume")
    parser.add_argument("--failures", default=None, help="failures file (default OUT.failures.jsonl)")
    parser.add_argument("--url", default=None, help="score through a running service (key: CAT_SCORE_API_KEY); default: in process")
    parser.add_argument("--concurrency", type=int, default=8, help="groups in flight (8); in process at most CAT_MAX_ACTIVE_GROUPS")
    parser.add_argument("--retries", type=int, default=2, help="retries of a group that failed for a reason that may pass (2)")
    parser.add_argument("--retry-failed", action="store_true", help="score again the groups an earlier run recorded as failed")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row instead of skipping it")
    parser.add_argument("--mode", choices=["rubric", "verifiable", "judge"], default=None, help="for rows without a mode")
    parser.add_argument("--options", default=None, help="JSON object of options for every row (a row's own options win)")
    parser.add_argument("--timeout", type=float, default=None, help="--url: seconds per request (the client's default: 600)")
    parser.add_argument("--no-history", action="store_true", help="in process: do not record the groups in the audit history")
    parser.add_argument("--json", dest="json_path", default=None, help="write the summary as JSON to this path")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    for name in ("id", "prompt", "rollouts", "reference", "mode", "rubric", "token_logprobs", "options", "metadata"):
        parser.add_argument(
            f"--{name.replace('_', '-')}-field", dest=f"{name}_field", default=name, help=f"input field of the group's {name} ({name})"
        )


def add_select_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scored", help="an output file of cat-reward score")
    parser.add_argument("-o", "--out", required=True, help="the selected rollouts, JSONL (prompt, completion, reward, ...)")
    parser.add_argument("--keep-top", type=int, default=None, help="the K best rollouts of each prompt")
    parser.add_argument("--min-reward", type=float, default=None, help="rollouts with at least this reward")
    parser.add_argument("--json", dest="json_path", default=None, help="write the counts as JSON to this path")


def _write_json(path: str, document: dict) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def score_main(args: argparse.Namespace, *, rows, roles=None, checker=None, transport=None) -> int:
    """``rows``: how a row is read (``api.rows.ROWS``, from the command line). ``roles``/``checker`` (in process) and ``transport`` (--url) may be injected (tests, bench)."""
    from pydantic import ValidationError

    from ..settings import Settings
    from .inputs import FieldMap, InputError, open_source
    from .runner import run
    from .scorers import InProcessScorer, UrlScorer, url_api_key
    from .store import OutputStore, StoreError
    from .summary import render, summarize

    if args.concurrency < 1 or args.retries < 0:
        return _fail("score", "--concurrency must be at least 1 and --retries at least 0")
    defaults: dict = {"mode": args.mode}
    if args.options:
        try:
            defaults["options"] = json.loads(args.options)
        except ValueError as exc:
            return _fail("score", f"--options is not JSON: {exc}")
        if not isinstance(defaults["options"], dict):
            return _fail("score", "--options must be a JSON object")
    fields = FieldMap(**{name: getattr(args, f"{name}_field") for name in FieldMap.__dataclass_fields__})
    try:
        settings = Settings()
    except ValidationError as exc:
        return _fail("score", f"invalid CAT_* settings: {exc}")
    out = Path(args.out)
    if Path(args.input).resolve() == out.resolve():
        return _fail("score", "the output must not be the input")
    try:
        source = open_source(args.input)
    except InputError as exc:
        return _fail("score", str(exc))
    if args.url:
        scorer = UrlScorer(args.url, rows=rows, api_key=url_api_key(settings), retries=args.retries, timeout_s=args.timeout, transport=transport)
    else:
        scorer = InProcessScorer(settings, rows=rows, history=not args.no_history, roles=roles, checker=checker)
    concurrency = args.concurrency
    if scorer.max_concurrency is not None and concurrency > scorer.max_concurrency:
        print(f"[cat-reward score] --concurrency {concurrency} lowered to CAT_MAX_ACTIVE_GROUPS ({scorer.max_concurrency})", file=sys.stderr)
        concurrency = scorer.max_concurrency
    store = OutputStore(out, Path(args.failures) if args.failures else None)
    try:
        store.open()
    except (StoreError, OSError) as exc:
        return _fail("score", str(exc))

    async def go():
        async with scorer:
            return await run(
                source,
                store,
                scorer,
                fields=fields,
                defaults=defaults,
                concurrency=concurrency,
                retries=0 if args.url else args.retries,  # the client retries itself
                retry_failed=args.retry_failed,
                strict=args.strict,
                progress=not args.no_progress,
            )

    try:
        stats = asyncio.run(go())
    except KeyboardInterrupt:
        store.close()
        return _fail(
            "score", f"interrupted; {len(store.done)} groups are in {out}: run the same command again to resume", EXIT_INTERRUPTED
        )
    finally:
        store.close()
    still_failed = len(store.still_failed())
    bad_rows = len(store.bad_rows)
    output = summarize(out)
    run_json = stats.to_json()
    print(render(run_json, output, still_failed, bad_rows))
    print(f"output: {out}\nfailures: {store.failures_path}")
    if args.json_path:
        _write_json(
            args.json_path,
            {
                "input": args.input,
                "output": str(out),
                "failures": str(store.failures_path),
                "scorer": args.url or "in-process",
                "concurrency": concurrency,
                "run": run_json,
                "failed_groups": still_failed,
                "bad_rows": bad_rows,
                "summary": output,
            },
        )
    if stats.stopped_at_line is not None:
        return _fail("score", f"--strict: stopped at the bad row on line {stats.stopped_at_line}")
    if still_failed or bad_rows:
        return _fail(
            "score",
            f"{still_failed} groups failed and {bad_rows} rows were bad; see {store.failures_path}"
            + (" (--retry-failed scores failed groups again)" if still_failed else ""),
            EXIT_INCOMPLETE,
        )
    return EXIT_OK


def select_main(args: argparse.Namespace) -> int:
    from .select import SelectError, select

    try:
        counts = select(Path(args.scored), Path(args.out), keep_top=args.keep_top, min_reward=args.min_reward)
    except SelectError as exc:
        return _fail("select", str(exc))
    print(
        f"selected {counts['selected']} of {counts['rollouts']} rollouts from {counts['groups']} groups "
        f"({counts['null_rewards']} without a reward, {counts['below_min_reward']} below --min-reward) -> {args.out}"
    )
    if args.json_path:
        _write_json(args.json_path, counts)
    return EXIT_OK
