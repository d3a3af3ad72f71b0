"""Bench: the CPU cost of one whole rubric group in the service, in process, LLM answered at once.

What ``POST /rewards`` costs per group below the HTTP framework: ``api.mapping.job_of`` (wire ->
domain, the request's ``model_dump``), ``RewardService.score`` (admission, limits,
``CaTPipeline.score``: fingerprint, reference cache, synthesis and rubric anchor calls, canaries,
the G x n verdicts, diagnostics, hacking policy; then ``_observe``, the record id, the result
document and the history record dict). The request is validated by pydantic beforehand (the
HTTP edge's work, not timed).

The anchor and the judge are real ``OpenAICompatClient``s behind ``InstrumentedLLM`` (as
``wiring`` builds them) whose probes are answered in advance and whose ``_post`` answers at once
from prebuilt vLLM-shaped bodies: /v1/completions (legacy logprobs, as in
``bench/verdict_path.py``), /v1/chat/completions for the synthesis (a ~880-char text of the load
test's simulated judge, different per group) and the rubric (8 criteria in JSON, different per
group). The cache is ``MemoryCache`` behind ``ResilientCache`` (``serve`` without Redis); the
history is a no-op store (the record dict is built, not written: storage is apart); the garbage
collector is tuned as ``serve`` tunes it (``cli.tune_gc``). The
injection detector is stubbed (no flags) unless ``--detector``: its cost is measured elsewhere.

Measured: ``time.process_time()`` over groups run one after another, per group, ``cold`` (every
group new, as in the load test) and ``warm`` (the same requests again: reference, verdicts and
canaries from the cache; a new record each time as the record id is the same); the best of
``--repeats`` (the host is shared: compare versions run alternately). ``--profile`` prints a
cProfile of the cold run (timer ``process_time``) instead.

    PYTHONPATH=service .venv/bin/python bench/group_path.py [--groups 200] [--json PATH] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import math
import os
import pstats
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

from cat_reward.api.mapping import job_of
from cat_reward.api.schemas import RewardRequest
from cat_reward.backends.chat_template import TemplateSkeleton
from cat_reward.backends.instrumented import InstrumentedLLM
from cat_reward.backends.openai_compat import CAPABILITIES, OpenAICompatClient
from cat_reward.cache.memory import MemoryCache
from cat_reward.cache.resilient import ResilientCache
from cat_reward.cli import tune_gc
from cat_reward.engine import CaTPipeline, load_prompt_set
from cat_reward.engine.ports import EquivalenceResult, Roles
from cat_reward.loadtest import simjudge
from cat_reward.loadtest.runner import rollout_text
from cat_reward.rewarding import RewardService
from cat_reward.settings import Settings

from common import canned_completions

G = 8
N = 8
CHATML = TemplateSkeleton(
    roles=("system", "user"),
    pieces=("<|im_start|>system\n", "<|im_end|>\n<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"),
)


class Checker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference == candidate)


class NullHistory:
    """Takes the record (built by the service) and keeps nothing: storage is measured apart."""

    def __init__(self) -> None:
        self.records = 0

    async def record(self, record: dict) -> None:
        self.records += 1

    def outbox_depth(self) -> int:
        return 0


def chat_body(text: str) -> dict:
    return {
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": 0,
        "model": simjudge.MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3000, "completion_tokens": 220, "total_tokens": 3220},
    }


def answers(count: int, offset: int) -> tuple[dict[int, dict], dict[int, dict]]:
    """Per group seed: the synthesis's and the rubric's chat bodies (built before the clock runs)."""
    synthesis, rubric = {}, {}
    for k in range(offset, offset + count):
        synthesis[k] = chat_body(simjudge.text_of(220, k))
        rubric[k] = chat_body(json.dumps({"criteria": simjudge._criteria(N, k, 220)}))
    return synthesis, rubric


def make_client(role: str, chats: dict) -> OpenAICompatClient:
    client = OpenAICompatClient(
        role=role, model=simjudge.MODEL, base_urls=["http://127.0.0.1:9/v1"], http=httpx.AsyncClient(),
        kind="vllm", score_batch_wait_s=0.0,
    )
    client._capabilities = CAPABILITIES["vllm"]
    client._scoring_ok = True
    client._logprob_mode = "token_ids"
    client._choice_token_ids[("yes", "no")] = (9891, 2152)
    client._skeletons[("system", "user")] = (CHATML, math.inf)
    bodies: dict[int, dict] = {}

    async def post(path, body, *, weight=1, session=None, root=False):
        if path == "/chat/completions":
            table = chats["rubric"] if "response_format" in body else chats["synthesis"]
            return table[body["seed"]]
        assert path == "/completions", path
        n = len(body["prompt"])
        if n not in bodies:  # built once per batch size: the bench measures the service, not a server
            bodies[n] = canned_completions(n, simjudge.MODEL)
        return bodies[n]

    client._post = post  # type: ignore[method-assign]
    return client


def make_requests(count: int, offset: int) -> list[RewardRequest]:
    """The load test's groups (``loadtest.runner.make_groups``), validated as the route gets them."""
    rng = random.Random(offset)
    requests = []
    for k in range(offset, offset + count):
        rollouts = [f"Attempt {i} of problem {k}: " + rollout_text(rng, 512.0, 0.0) for i in range(G)]
        body = {
            "prompt": f"[bench] Problem {k}: show that the sum of the first {k + 3} odd numbers is a square.",
            "rollouts": rollouts,
            "mode": "rubric",
            "options": {"num_criteria": N, "max_criteria": N, "seed": k},
        }
        requests.append(RewardRequest.model_validate(body))
    return requests


def stub_detector() -> None:
    from cat_reward.engine import injection

    injection.injection_flags = lambda text: []  # type: ignore[assignment]


def rest_only(pipeline: CaTPipeline) -> None:
    """Leave the rubric's verdicts out (``--rest-only``): ``_score_rubric`` answers with fixed
    verdicts (the same objects for every group), rewards aggregated as the pipeline does, and settles
    the canaries with fixed verdicts through ``Canaries.complete`` (their cache write included).
    What remains is the rest of the group's path: mapping, fingerprint, reference cache, anchor
    calls, canaries' preparation, diagnostics, policy, metrics, record id, documents."""
    from cat_reward.engine import aggregation
    from cat_reward.engine.types import RolloutOutcome, Verdict

    def rewards_of(rubric, options):  # as the pipeline's own _score_rubric aggregates, in either version
        if hasattr(aggregation, "aggregator"):
            return aggregation.aggregator(rubric, options)
        return lambda verdicts: aggregation.aggregate(rubric, verdicts, options)

    fixed: dict[tuple[int, int], list] = {}

    async def score_rubric(ctx, rubric, cache, canary=None):
        if canary is not None and not canary.completed.done():
            canary.completed.set_result(
                await canary.complete([Verdict("canary", met=False, p_yes=0.1, raw="no") for _ in canary.missing])
            )
        outcomes = []
        reward = rewards_of(rubric, ctx.options)
        for index in range(len(ctx.group.rollouts)):
            mine = fixed.get((index, len(rubric)))
            if mine is None:
                mine = fixed[(index, len(rubric))] = [
                    Verdict(c.id, met=(index + j) % 3 != 0, p_yes=0.8 if (index + j) % 3 else 0.2, raw="yes" if (index + j) % 3 else "no")
                    for j, c in enumerate(rubric)
                ]
            mine = [v if v.criterion_id == c.id else Verdict(c.id, met=v.met, p_yes=v.p_yes, raw=v.raw) for v, c in zip(mine, rubric)]
            outcomes.append(RolloutOutcome(index=index, reward=reward(mine), verdicts=mine))
        return outcomes

    pipeline._score_rubric = score_rubric  # type: ignore[method-assign]


async def one(service: RewardService, request: RewardRequest) -> dict:
    job = job_of(request, service.defaults, "rubric")
    scored = await service.score(job)
    return scored.document


async def many(service: RewardService, requests: list[RewardRequest], concurrency: int) -> list[dict]:
    """The groups one after another (``concurrency`` 1), or up to ``concurrency`` at once (as a
    step's groups are: their verdicts coalesce into shared batches, more objects live at once)."""
    if concurrency <= 1:
        return [await one(service, q) for q in requests]
    gate = asyncio.Semaphore(concurrency)

    async def gated(q: RewardRequest) -> dict:
        async with gate:
            return await one(service, q)

    return list(await asyncio.gather(*(gated(q) for q in requests)))


async def run(
    groups: int, repeats: int, profile: str | None, concurrency: int = 1, with_warm: bool = True, rest: bool = False
) -> dict:
    chats: dict = {"synthesis": {}, "rubric": {}}
    anchor = make_client("anchor", chats)
    judge = make_client("judge", chats)
    roles = Roles(anchor=InstrumentedLLM(anchor), judge=InstrumentedLLM(judge))
    settings = Settings()
    pipeline = CaTPipeline(roles, load_prompt_set(settings.prompt_set), Checker(), cache=ResilientCache(MemoryCache()))
    history = NullHistory()
    service = RewardService(settings, pipeline, history)
    if rest:
        rest_only(pipeline)

    def load(count: int, offset: int) -> list[RewardRequest]:
        s, r = answers(count, offset)
        chats["synthesis"].update(s)
        chats["rubric"].update(r)
        return make_requests(count, offset)

    for request in load(2, 1_000_000):  # warm-up: imports, lru caches, metrics' label children
        await one(service, request)
    tune_gc(settings)  # as ``cat-reward serve`` does: start-up objects frozen, gen0 threshold 10000
    cold, warm = [], []
    documents = []
    for r in range(repeats):
        requests = load(groups, r * groups)
        pipeline.cache = ResilientCache(MemoryCache())  # each repeat from an empty cache
        profiler = cProfile.Profile(time.process_time) if profile and r == 0 else None
        gc.collect()  # the previous repeat's cache and documents: not this repeat's garbage
        started = time.process_time()
        if profiler:
            profiler.enable()
        if os.environ.get("GROUP_PATH_SETUP_ONLY"):  # the bench's own work (requests, answers), to subtract
            continue
        documents = await many(service, requests, concurrency)
        if profiler:
            profiler.disable()
        cold.append((time.process_time() - started) * 1000 / groups)
        if with_warm:
            started = time.process_time()
            again = await many(service, requests, concurrency)
            warm.append((time.process_time() - started) * 1000 / groups)
            assert [d["rewards"] for d in again] == [d["rewards"] for d in documents], "warm rewards must be the cold ones"
        if profiler:
            stats = pstats.Stats(profiler, stream=sys.stderr)
            stats.sort_stats(profile).print_stats(45)
    await anchor._http.aclose()
    await judge._http.aclose()
    return {
        "groups": groups,
        "repeats": repeats,
        "concurrency": concurrency,
        "rest_only": rest,
        "G": G,
        "n": N,
        "detector": "real" if os.environ.get("GROUP_PATH_DETECTOR") else "stubbed",
        "rollout_chars": statistics.mean(len(r) for r in make_requests(1, 0)[0].rollouts),
        "cold_ms_per_group": min(cold) if cold else None,
        "cold_ms_all": cold,
        "warm_ms_per_group": min(warm) if warm else None,
        "warm_ms_all": warm,
        "records": history.records,
        "last_document_sha256": __import__("hashlib").sha256(
            json.dumps([{k: v for k, v in d.items() if k != "usage"} for d in documents], sort_keys=True).encode()
        ).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1, help="groups scored at once (default: one after another)")
    parser.add_argument("--detector", action="store_true", help="keep the real injection detector")
    parser.add_argument("--no-warm", action="store_true", help="cold groups only (e.g. to count instructions under valgrind)")
    parser.add_argument("--rest-only", action="store_true", help="the rubric's verdicts answered by fixed ones (see rest_only)")
    parser.add_argument("--profile", nargs="?", const="tottime", default=None, help="cProfile the first cold run, sorted by this")
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH", help="write the result here")
    args = parser.parse_args()
    if args.detector:
        os.environ["GROUP_PATH_DETECTOR"] = "1"
    else:
        stub_detector()
    result = asyncio.run(run(args.groups, args.repeats, args.profile, args.concurrency, not args.no_warm, args.rest_only))
    print(
        f"{'rest of the ' if args.rest_only else ''}group path, CPU per group (G={G}, n={N}, ~{result['rollout_chars']:.0f}-char rollouts, {args.concurrency} at once, detector "
        f"{result['detector']}): cold {result['cold_ms_per_group'] or 0:.3f} ms, warm {result['warm_ms_per_group'] or 0:.3f} ms "
        f"(best of {args.repeats} x {args.groups} groups; all cold {[round(x, 3) for x in result['cold_ms_all']]})"
    )
    if args.json_path:
        path = Path(args.json_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
