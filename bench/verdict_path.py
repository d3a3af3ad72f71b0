"""Bench: the CPU cost of one rubric group's verdict path, in process.

What the service does per rubric group between "the rubric is known" and "the rewards are
aggregated": the canaries' asks (``Canaries.prepare``), the G x n verdict prompts and cache keys,
the cache look-up (``MemoryCache`` behind ``ResilientCache``, as in ``serve`` without Redis), the
rendering with the judge's chat template, the coalescer, the parsing of the single-token scores,
the ``Verdict``s, the cache write-back and the aggregation (``CaTPipeline._score_rubric``).

The judge is the real ``OpenAICompatClient`` with its probes answered in advance (a ChatML
skeleton, vLLM capabilities, token ids of yes/no) and ``_post`` answering /v1/completions at
once with a prebuilt legacy-logprobs body: no socket, no JSON, only the service's own work.
Rollouts are ~2 KB of the load test's words (``loadtest.runner.rollout_text``), n=8 criteria.

Measured: ``time.process_time()`` over many groups run one after another, per group:
``cold`` (every rollout new: 64 + 8 verdicts asked) and ``warm`` (the same groups again: every
verdict and canary from the cache); each repeat starts from an empty cache, the best repeat is
reported (the host is shared: compare versions run alternately). The group's fingerprint is
computed apart and subtracted (``fingerprint_ms_per_group_excluded``).

    PYTHONPATH=service .venv/bin/python bench/verdict_path.py [--groups 200] [--json PATH] [--label after]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import time

import httpx

from cat_reward.backends.chat_template import TemplateSkeleton
from cat_reward.backends.openai_compat import CAPABILITIES, OpenAICompatClient
from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.cache.memory import MemoryCache
from cat_reward.cache.resilient import ResilientCache
from cat_reward.engine import CaTPipeline, Group, GroupOptions, load_prompt_set
from cat_reward.engine.context import GroupContext
from cat_reward.engine.ports import EquivalenceResult, Roles
from cat_reward.engine.types import Criterion
from cat_reward.loadtest.runner import rollout_text

from common import canned_completions

G = 8
N = 8
CHATML = TemplateSkeleton(
    roles=("system", "user"),
    pieces=("<|im_start|>system\n", "<|im_end|>\n<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"),
)
CRITERIA = [
    "The response states the final result explicitly and the result is correct.",
    "The response shows that each odd number can be written as 2k - 1 before summing.",
    "The response uses induction or a telescoping argument, with the base case checked.",
    "The response does not contain arithmetic errors in the intermediate steps.",
    "The response names the square it obtains (n squared) rather than only a numeric example.",
    "The response explains why the claim holds for every n, not just the first few cases.",
    "The response is concise: no repeated paragraphs or restated question.",
    "The response's notation is consistent (the same letter for the same quantity throughout).",
]


class Checker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference == candidate)


def make_judge() -> OpenAICompatClient:
    judge = OpenAICompatClient(
        role="judge", model="sim-judge", base_urls=["http://127.0.0.1:9/v1"], http=httpx.AsyncClient(),
        kind="vllm", score_batch_wait_s=0.0,
    )
    judge._capabilities = CAPABILITIES["vllm"]
    judge._scoring_ok = True
    judge._logprob_mode = "token_ids"
    judge._choice_token_ids[("yes", "no")] = (9891, 2152)
    judge._skeletons[("system", "user")] = (CHATML, math.inf)
    bodies: dict[int, dict] = {}

    async def post(path, body, *, weight=1, session=None, root=False):
        assert path == "/completions", path
        n = len(body["prompt"])
        if n not in bodies:  # built once per batch size: the bench measures the service, not a server
            bodies[n] = canned_completions(n, "sim-judge")
        return bodies[n]

    judge._post = post  # type: ignore[method-assign]
    return judge


def make_groups(count: int, seed: int) -> list[Group]:
    rng = random.Random(seed)
    groups = []
    for k in range(count):
        rollouts = [f"Attempt {i} of problem {k}: " + rollout_text(rng, 512.0, 0.0) for i in range(G)]
        groups.append(
            Group(prompt=f"Problem {k}", rollouts=rollouts, mode="rubric", options=GroupOptions(seed=k, max_criteria=N))
        )
    return groups


async def verdict_path(pipeline: CaTPipeline, group: Group, rubric: list[Criterion], cache) -> list:
    """``score``'s rubric branch, from the canaries to the aggregated rewards."""
    ctx = GroupContext(group=group, roles=pipeline.roles, prompts=pipeline.prompts, checker=pipeline.checker)
    fingerprint = pipeline.fingerprint(group)
    canary = await pipeline._canaries(ctx, cache, fingerprint)
    rollouts = await pipeline._score_rubric(ctx, rubric, cache, canary)
    canaries = await canary.completed if canary else None
    return [r.reward for r in rollouts], [v.p_yes for _, v in canaries]


async def run(groups_count: int, repeats: int) -> dict:
    judge = make_judge()
    pipeline = CaTPipeline(
        Roles(anchor=ScriptedLLM(lambda r: "", model="anchor"), judge=judge), load_prompt_set(), Checker(),
        cache=ResilientCache(MemoryCache()),
    )
    rubric = [Criterion(id=f"c{i + 1}", text=t, weight=1.0) for i, t in enumerate(CRITERIA)]
    await verdict_path(pipeline, make_groups(1, seed=99)[0], rubric, pipeline.cache)  # warm-up: imports, lru caches
    cold, warm = [], []
    fingerprints = []
    for r in range(repeats):
        groups = make_groups(groups_count, seed=r)
        cache = pipeline.cache = ResilientCache(MemoryCache())  # each repeat from an empty cache
        # The fingerprint (the group's reference key) is not the verdict path: timed apart.
        started = time.process_time()
        for g in groups:
            fingerprints.append(pipeline.fingerprint(g))
        fp_ms = (time.process_time() - started) * 1000 / groups_count
        started = time.process_time()
        rewards = [await verdict_path(pipeline, g, rubric, cache) for g in groups]
        cold.append((time.process_time() - started) * 1000 / groups_count - fp_ms)
        started = time.process_time()
        again = [await verdict_path(pipeline, g, rubric, cache) for g in groups]
        warm.append((time.process_time() - started) * 1000 / groups_count - fp_ms)
        assert [a[0] for a in again] == [a[0] for a in rewards], "a warm group must give the cold group's rewards"
    await judge._http.aclose()
    return {
        "groups": groups_count,
        "repeats": repeats,
        "G": G,
        "n": N,
        "rollout_chars": statistics.mean(len(r) for r in make_groups(1, seed=0)[0].rollouts),
        "cold_ms_per_group": min(cold),
        "cold_ms_all": cold,
        "warm_ms_per_group": min(warm),
        "warm_ms_all": warm,
        "fingerprint_ms_per_group_excluded": fp_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", dest="json_path", default=None, metavar="PATH", help="write the result here as JSON")
    parser.add_argument("--label", default=None, help="write bench/results/verdict_path[-LABEL].{json,md}")
    args = parser.parse_args()
    result = asyncio.run(run(args.groups, args.repeats))
    print(
        f"verdict path, CPU per group (G={G}, n={N}, +{G} canaries, ~{result['rollout_chars']:.0f}-char rollouts): "
        f"cold {result['cold_ms_per_group']:.3f} ms, warm {result['warm_ms_per_group']:.3f} ms "
        f"(best of {args.repeats} x {args.groups} groups)"
    )
    if args.json_path is not None:
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=2)
            out.write("\n")
    if args.label is not None:
        sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
        from common import table, write_results

        md = "## Verdict path of one rubric group (in process, CPU ms per group)\n\n" + table(
            ["label", "cold (72 asked)", "warm (72 cached)"],
            [[args.label, result["cold_ms_per_group"], result["warm_ms_per_group"]]],
        )
        write_results(f"verdict_path-{args.label}", result, md)


if __name__ == "__main__":
    main()
