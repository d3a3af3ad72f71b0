"""``cat-reward eval``: the command behind the CLI subcommand (argument handling, exit codes)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _fail(message: str, code: int) -> int:
    print(f"[cat-reward eval] {message}", file=sys.stderr, flush=True)
    return code


def main(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ..settings import Settings
    from .datasets import DatasetError, load_dataset
    from .policy import PolicyError
    from .report import plot_available, scored_anything, table, write_outputs
    from .runner import EvalOptions, parse_group_sizes, run_eval

    try:
        group_sizes = parse_group_sizes(args.group_sizes)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.concurrency < 1 or args.max_tokens < 1:
        return _fail("--concurrency and --max-tokens must be at least 1", EXIT_USAGE)
    plot = not args.no_plot
    if plot and not plot_available():
        return _fail(
            "the plot needs matplotlib: pip install 'cat-reward[eval]' (or pass --no-plot)", EXIT_USAGE
        )
    try:
        settings = Settings()
    except ValidationError as exc:
        return _fail(f"invalid CAT_* settings: {exc}", EXIT_USAGE)
    try:
        dataset = load_dataset(args.data, args.format, args.limit)
    except DatasetError as exc:
        return _fail(str(exc), EXIT_USAGE)
    options = EvalOptions(
        data=args.data,
        format=dataset.format,
        limit=args.limit,
        policy_url=args.policy_url,
        policy_model=args.policy_model,
        group_sizes=group_sizes,
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        seed=args.seed,
        concurrency=args.concurrency,
    )
    try:
        results = asyncio.run(run_eval(options, settings, dataset=dataset, progress=not args.no_progress))
    except PolicyError as exc:
        return _fail(f"cannot use the policy: {exc.message}", EXIT_FAILED)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    out = Path(args.out)
    paths = write_outputs(results, out, plot=plot)
    print(table(results))
    for name, path in paths.items():
        print(f"{name}: {path}")
    if not scored_anything(results):
        return _fail("no item could be scored at any G; see error_reasons in results.json", EXIT_FAILED)
    return EXIT_OK
