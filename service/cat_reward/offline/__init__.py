"""Offline scoring: ``cat-reward score`` scores a file of groups (JSONL, Parquet or a Hugging Face
dataset) in process or through a running service, resumably; ``cat-reward select`` picks
rollouts from its output (best K per prompt, a reward threshold) without another judge call.

    inputs    rows of the input file -> request bodies (field mapping, line numbers)
    store     the output and failures files: append-only, resumable, one line per group key
    scorers   in process (the service's own RewardService) or over HTTP (the Python client)
    runner    the concurrent loop: skip what is done, retry, record, progress bar
    summary   counts, reward histogram, zero-variance share, flag kinds
    select    best-K / min-reward selection from an output file, as SFT data
    command   the CLI subcommands
"""
