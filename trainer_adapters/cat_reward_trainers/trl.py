"""CaT rewards for TRL's ``GRPOTrainer``.

    from trl import GRPOConfig, GRPOTrainer
    from cat_reward_trainers.trl import cat_reward_func

    config = GRPOConfig(num_generations=8, ...)
    reward = cat_reward_func("http://127.0.0.1:8000", num_generations=config.num_generations)
    trainer = GRPOTrainer(model=..., args=config, train_dataset=..., reward_funcs=[reward])

TRL calls the reward function once per generation round with the prompts and completions of
this process, each prompt's ``num_generations`` completions next to each other. TRL does not
pass ``num_generations``: give the factory the same number as ``GRPOConfig.num_generations``.

With one process (or whenever this process's slice holds whole groups) the groups go to
``POST /rewards/batch`` in one request. With several processes a group may straddle two of
them (TRL issue 3896); then each process sends its part of the group to
``POST /rewards/samples`` with the sample's index in the group and a group key made of the run,
``trainer_state.global_step`` and the group's number in the global batch, and the service
waits for the other part. ``split_groups="auto"`` (the default) picks per call.

A reward that could not be computed comes back as ``None``, which TRL turns into NaN and leaves
out of the advantage; a group the service could not score at all (e.g. the anchor produced no
usable rubric) gives ``None`` for all its completions. Transport errors and an unreachable
judge (after the client's retries) raise: the step fails loudly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from cat_reward_client import CatRewardError, RewardGroup, SampleGroup

from ._common import LoopClients, completion_text, prompt_json

log = logging.getLogger("cat_reward_trainers.trl")

SplitGroups = Literal["auto", "always", "never"]


def _process_layout() -> tuple[int, int]:
    """(process index, number of processes) as accelerate sees them, else from the environment."""
    try:
        from accelerate import PartialState

        state = PartialState()
        return int(state.process_index), int(state.num_processes)
    except Exception:  # noqa: BLE001 - accelerate absent or not initialised
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _prompt_fingerprint(prompt: Any) -> str:
    return hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:16]


def cat_reward_func(
    base_url: str | None = None,
    *,
    num_generations: int,
    mode: str | None = None,
    options: Mapping[str, Any] | None = None,
    reference_column: str | None = None,
    split_groups: SplitGroups = "auto",
    run_id: str | None = None,
    deadline_s: float | None = None,
    name: str = "cat_reward",
    process_layout: Callable[[], tuple[int, int]] | None = None,
    **client_kwargs: Any,
) -> Callable[..., Any]:
    """Build an async reward function for ``GRPOTrainer(reward_funcs=[...])``.

    Args:
        base_url: the cat-reward service; default ``$CAT_REWARD_URL`` or http://127.0.0.1:8000.
        num_generations: G, the same as ``GRPOConfig.num_generations``.
        mode: ``rubric``, ``verifiable`` or ``judge``; default: the service's.
        options: ``RewardOptions`` sent with every group (e.g. ``{"seed": 1}``).
        reference_column: a dataset column whose value is the caller's reference (aggregator
            ``given``); default none: the anchor synthesizes the reference, as in CaT.
        split_groups: ``"auto"`` uses /rewards/batch when this process holds whole groups and
            /rewards/samples otherwise; ``"always"`` always sends samples; ``"never"`` always
            sends whole groups (and raises when a group is cut).
        run_id: names the run in group keys and in the service's history; set it when several
            runs share one service (default ``$CAT_REWARD_RUN_ID`` or ``"trl"``).
        deadline_s: how long the service waits for a split group's other part.
        name: the function's ``__name__``, which TRL uses in its metric names.
        process_layout: returns (process index, process count); default accelerate's.
        client_kwargs: passed to ``AsyncCatRewardClient`` (``api_key``, ``timeout``, ``max_retries``).
    """
    if num_generations < 1:
        raise ValueError("num_generations must be at least 1 (GRPOConfig.num_generations)")
    if split_groups not in ("auto", "always", "never"):
        raise ValueError("split_groups must be 'auto', 'always' or 'never'")
    clients = LoopClients(base_url, client_kwargs)
    layout = process_layout or _process_layout
    run = run_id or os.environ.get("CAT_REWARD_RUN_ID") or "trl"
    G = num_generations

    async def reward(
        prompts: Sequence[Any],
        completions: Sequence[Any],
        completion_ids: Any = None,
        trainer_state: Any = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        n = len(completions)
        if len(prompts) != n:
            raise ValueError(f"{len(prompts)} prompts for {n} completions")
        if n == 0:
            return []
        texts = [completion_text(c) for c in completions]
        wire_prompts = [prompt_json(p) for p in prompts]
        references = _references(columns, reference_column, n)
        step = int(getattr(trainer_state, "global_step", 0) or 0)
        rank, _ = layout()
        offset = rank * n  # TRL lays the global batch out process after process
        whole = offset % G == 0 and n % G == 0
        if split_groups == "never" and not whole:
            raise ValueError(
                f"this process holds completions {offset}..{offset + n - 1}, which cut groups of {G}: "
                "use split_groups='auto' (or make per-process batches a multiple of num_generations)"
            )
        metadata = {"run_id": run, "step": step, "tags": {"trainer": "trl"}}
        client = clients.get()
        if whole and split_groups != "always":
            rewards, details, flags, failed = await _by_batch(client, wire_prompts, texts, references, G, mode, options, metadata)
        else:
            rewards, details, flags, failed = await _by_samples(
                client, wire_prompts, texts, references, G, offset, step, run, mode, options, metadata, deadline_s
            )
        if log_metric is not None:
            log_metric("cat/null_rewards", float(sum(r is None for r in rewards)))
            log_metric("cat/failed_groups", float(failed))
        if log_extra is not None:
            log_extra("cat_flags", [",".join(f) for f in flags])
            log_extra("cat_error", [d or "" for d in details])
        return rewards

    reward.__name__ = name
    reward.__qualname__ = name
    return reward


def _references(columns: Mapping[str, Any], column: str | None, n: int) -> list[str | None]:
    if column is None:
        return [None] * n
    if column not in columns:
        raise KeyError(f"reference_column {column!r} is not a dataset column (have: {sorted(columns)})")
    values = list(columns[column])
    return [None if v is None else str(v) for v in values]


async def _by_batch(client, prompts, texts, references, G, mode, options, metadata):
    n = len(texts)
    groups = []
    for start in range(0, n, G):
        prompt = prompts[start]
        if any(prompts[i] != prompt for i in range(start, start + G)):
            raise ValueError(
                f"completions {start}..{start + G - 1} do not share one prompt: is num_generations={G} "
                "the same as GRPOConfig.num_generations?"
            )
        groups.append(
            RewardGroup(prompt, texts[start : start + G], mode=mode, reference=references[start], options=options,
                        metadata=metadata)
        )
    batch = await client.rewards_batch(groups)
    rewards: list[float | None] = [None] * n
    errors: list[str | None] = [None] * n
    flags: list[list[str]] = [[] for _ in range(n)]
    failed = 0
    for g, item in enumerate(batch):
        start = g * G
        if not item.ok or item.result is None:
            failed += 1
            message = f"{item.error.type}: {item.error.message}" if item.error else "group failed"
            log.warning("cat-reward could not score group %d (completions %d..%d): %s", g, start, start + G - 1, message)
            for i in range(start, start + G):
                errors[i] = message
            continue
        for j, detail in enumerate(item.result.details):
            rewards[start + j] = item.result.rewards[j]
            errors[start + j] = detail.error
            flags[start + j] = list(detail.flags) + list(item.result.flags)
    return rewards, errors, flags, failed


async def _by_samples(client, prompts, texts, references, G, offset, step, run, mode, options, metadata, deadline_s):
    n = len(texts)
    # Cut this process's completions into the parts of each global group it holds.
    parts: dict[int, list[int]] = {}
    for i in range(n):
        parts.setdefault((offset + i) // G, []).append(i)

    async def send(group_no: int, locals_: list[int]):
        prompt = prompts[locals_[0]]
        key = f"{run}/trl/{step}/{group_no}/{_prompt_fingerprint(prompt)}"
        return await client.rewards_samples(
            prompt,
            [{"rollout": texts[i], "index": (offset + i) % G} for i in locals_],
            SampleGroup(size=G, id=key, step=step, deadline_s=deadline_s),
            mode=mode,
            reference=references[locals_[0]],
            options=options,
            metadata=metadata,
        )

    items = list(parts.items())
    outcomes = await asyncio.gather(*[send(g, idx) for g, idx in items], return_exceptions=True)
    rewards: list[float | None] = [None] * n
    errors: list[str | None] = [None] * n
    flags: list[list[str]] = [[] for _ in range(n)]
    failed = 0
    for (group_no, locals_), outcome in zip(items, outcomes):
        if isinstance(outcome, CatRewardError) and outcome.status == 409:
            failed += 1  # the group was incomplete at its deadline, or its parts disagree
            log.warning("cat-reward could not score group %d: %s", group_no, outcome)
            for i in locals_:
                errors[i] = f"{outcome.type}: {outcome.message}"
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        for i, reward, detail in zip(locals_, outcome.rewards, outcome.details):
            rewards[i] = reward
            errors[i] = detail.error
            flags[i] = list(detail.flags) + list(outcome.result.flags) + (["partial_group"] if outcome.group.partial else [])
    return rewards, errors, flags, failed
