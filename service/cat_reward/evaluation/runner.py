"""Run one evaluation: load the items, sample G rollouts each from the policy, score them with the
service's own pipeline (built in process by ``open_services``), and assemble the results."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .. import __version__
from ..settings import Settings
from .datasets import Dataset, MathItem, load_dataset
from .policy import PolicyClient, PolicyError
from .report import SCHEMA, summarize
from .scoring import MATH_PROMPT, ItemScorer, describe, health_messages, math_messages



@dataclass
class EvalOptions:
    data: str
    format: str | None = None
    limit: int | None = None
    policy_url: str | None = None  # default: the anchor's (first) base URL
    policy_model: str | None = None  # default: the first model the policy lists
    group_sizes: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int = 1024
    seed: int | None = None
    concurrency: int = 4


def parse_group_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--group-sizes takes comma-separated positive integers, not {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise ValueError(f"--group-sizes takes comma-separated positive integers, not {text!r}")
    return sizes


class _PlainProgress:
    """Progress lines on stderr when tqdm is not installed."""

    def __init__(self, total: int, desc: str, file) -> None:
        self.total, self.desc, self.file, self.n = total, desc, file, 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.file is not None:
            print(f"{self.desc}: {self.n}/{self.total} items", file=self.file, flush=True)

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool, file):
    if not enabled:
        return _PlainProgress(total, desc, None)
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(total, desc, file)
    return tqdm(total=total, desc=desc, unit="item", file=file, dynamic_ncols=True, mininterval=0.5)


async def run_eval(
    options: EvalOptions,
    settings: Settings,
    *,
    dataset: Dataset | None = None,
    roles=None,
    checker=None,
    policy_transport=None,
    progress: bool = True,
    progress_file=None,
) -> dict:
    """The results document (``report.SCHEMA``). Raises ``DatasetError`` for bad data and
    ``PolicyError`` when the policy's model cannot be determined; per-item failures are recorded."""
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    dataset = dataset or load_dataset(options.data, options.format, options.limit)  # type: ignore[arg-type]
    group_sizes = sorted(set(options.group_sizes))
    if group_sizes[-1] > settings.max_rollouts:
        raise ValueError(f"G={group_sizes[-1]} exceeds CAT_MAX_ROLLOUTS ({settings.max_rollouts})")
    max_g = group_sizes[-1]
    policy_url = options.policy_url or settings.anchor_base_url[0]
    api_key = settings.eval_policy_api_key.get_secret_value() if settings.eval_policy_api_key else None
    if api_key is None and options.policy_url is None and settings.anchor_api_key is not None:
        api_key = settings.anchor_api_key.get_secret_value()  # the anchor plays policy: its key too
    policy = PolicyClient(
        policy_url,
        model=options.policy_model,
        api_key=api_key,
        temperature=options.temperature,
        top_p=options.top_p,
        max_tokens=options.max_tokens,
        seed=options.seed,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        transport=policy_transport,
    )
    from ..wiring import open_services  # here: wiring and api import each other, api first

    services = None
    try:
        model = await policy.resolve_model()
        services = await open_services(settings, roles=roles, checker=checker, with_history=False)
        scorer = ItemScorer(services.rewards, services.checker, seed=options.seed)
        is_math = dataset.format == "math"
        bar = _progress(len(dataset.items), f"eval {dataset.format}", progress, progress_file or sys.stderr)
        gate = asyncio.Semaphore(max(1, options.concurrency))
        failures = 0

        async def one(item):
            nonlocal failures
            async with gate:
                messages = math_messages(item) if is_math else health_messages(item)
                try:
                    completions = await policy.sample(messages, max_g)
                except PolicyError as exc:
                    completions, policy_error = [], describe(exc)
                else:
                    policy_error = None
                if policy_error is None:
                    if is_math:
                        result = await scorer.score_math(item, completions, group_sizes)
                    else:
                        result = await scorer.score_health(item, completions, group_sizes)
                else:
                    result = _unsampled(item, is_math, policy_error, group_sizes)
                document = result.to_json()
            if policy_error or any(g["error"] for g in document["groups"]):
                failures += 1
                bar.set_postfix_str(f"errors={failures}")
            bar.update(1)
            return document

        try:
            items = await asyncio.gather(*(one(item) for item in dataset.items))
        finally:
            bar.close()
        config = {
            "data": dataset.source,
            "format": dataset.format,
            "items": len(dataset.items),
            "items_in_source": dataset.total,
            "limit": options.limit,
            "group_sizes": group_sizes,
            "policy": {
                "url": policy_url,
                "model": model,
                "temperature": options.temperature,
                "top_p": options.top_p,
                "max_tokens": options.max_tokens,
                "seed": options.seed,
                "n_per_request": policy.multi_choice,  # true: n=G honoured; false: one rollout per request; null: unknown
                "requests": policy.requests,
                "rollouts_topped_up": policy.topped_up,
                "prompt_template": MATH_PROMPT if is_math else "the item's chat messages, as they are",
            },
            "anchor_model": services.roles.anchor.model,
            "anchor_url": settings.anchor_base_url,
            "judge_model": services.roles.judge.model,
            "judge_url": settings.judge_urls,
            "prompt_version": services.pipeline.prompts.version,
            "include_question": settings.include_question,
            "synthesis": {"temperature": settings.synthesis_temperature, "max_tokens": settings.synthesis_max_tokens},
            "answer_extractors": list(settings.answer_extractors),
            "concurrency": options.concurrency,
            "cat_reward_version": __version__,
            "started_at": started_at,
            "elapsed_s": round(time.perf_counter() - started, 1),
        }
        return {
            "schema": SCHEMA,
            "kind": dataset.format,
            "config": config,
            "summary": summarize(dataset.format, items, group_sizes),
            "items": items,
        }
    finally:
        await policy.aclose()
        if services is not None:
            await services.aclose()


def _unsampled(item, is_math: bool, policy_error: str, group_sizes: list[int]):
    from .scoring import HealthGroup, HealthResult, MathGroup, MathResult

    if is_math:
        assert isinstance(item, MathItem)
        result = MathResult(id=item.id, problem=item.problem, gold=item.answer, meta=dict(item.meta), policy_error=policy_error)
        result.groups = [MathGroup(group_size=g, error=policy_error) for g in group_sizes]
    else:
        result = HealthResult(
            id=item.id, prompt=[dict(m) for m in item.prompt], n_criteria=len(item.rubrics), meta=dict(item.meta),
            policy_error=policy_error,
        )
        result.groups = [HealthGroup(group_size=g, error=policy_error) for g in group_sizes]
    return result
