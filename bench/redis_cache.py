"""Bench: the Redis cache's CPU per rubric group, the write script against pipelined SETs.

What one load-test group asks of the cache when replicas share Redis (`CAT_REDIS_URL`), with
the service's own ``RedisCache``: MGET of the reference entry, the entry written, MGET of the
G x n verdict keys and of the G canary keys, then both written (G=8, n=8: 64 + 8 entries of
the size the engine stores). Each group's keys are new, as in a training step. Measures the
process CPU per group (``time.process_time``) with the write script (the default) and with the
pipelined SETs a server that refuses scripts gets (the same class, ``scripts`` set to False),
one group at a time and 16 at once, alternately over ``--repeats`` rounds; the median of each.

    .venv/bin/python bench/redis_cache.py [--redis-url redis://127.0.0.1:6379/0] [--groups 400] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from common import ROOT, table, write_results

sys.path.insert(0, str(ROOT / "service"))
from cat_reward.cache import RedisCache  # noqa: E402

G, N = 8, 8
VERDICT = {"met": True, "p_yes": 0.8731, "raw": "yes", "attempts": 1}
REFERENCE = {
    "reference": {"text": "x" * 880, "aggregator": "synthesis", "answer": None, "details": {"anchor_model": "judge"}},
    "rubric": [{"id": f"c{i}", "text": "The response states the key step " + "y" * 60, "weight": 1.0, "source": "anchor",
                "tags": [], "importance": None} for i in range(N)],
    "rubric_info": {"requested": N, "proposed": N},
}


async def one_group(cache: RedisCache, k: str) -> None:
    await cache.get_many([f"ref:{k}"])
    await cache.set_many({f"ref:{k}": REFERENCE}, 3600)
    verdicts = [f"verdict:{k}:{i}" for i in range(G * N)]
    canaries = [f"canary:{k}:{i}" for i in range(G)]
    await cache.get_many(verdicts)
    await cache.get_many(canaries)
    await cache.set_many({key: VERDICT for key in verdicts}, 3600)
    await cache.set_many({key: VERDICT for key in canaries}, 3600)


async def measure(url: str, scripts: bool, groups: int, concurrency: int) -> float:
    cache = RedisCache(url, f"bench-{uuid.uuid4().hex[:8]}:")
    cache.scripts = scripts
    run = uuid.uuid4().hex[:6]
    try:
        for i in range(10):  # connections, script load
            await one_group(cache, f"warm{run}{i}")
        gate = asyncio.Semaphore(concurrency)

        async def limited(i: int) -> None:
            async with gate:
                await one_group(cache, f"{run}{i}")

        started = time.process_time()
        await asyncio.gather(*(limited(i) for i in range(groups)))
        used = time.process_time() - started
        assert cache.scripts is scripts, "the server refused the script"
        return 1000 * used / groups
    finally:
        await cache.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--groups", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", dest="json_path", help="also write the results here")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for concurrency in (1, 16):
            for scripts in (True, False):
                name = f"{'script' if scripts else 'pipelined SETs'}, {concurrency} at once"
                results.setdefault(name, []).append(asyncio.run(measure(args.redis_url, scripts, args.groups, concurrency)))
    rows = [[name, statistics.median(values), min(values), max(values)] for name, values in results.items()]
    markdown = (
        f"## Redis cache: CPU per rubric group (bench/redis_cache.py)\n\nG={G}, n={N}: per group 3 MGETs and 3 writes "
        f"(1 reference, {G * N} verdicts, {G} canaries), {args.groups} groups a run, median of {args.repeats} alternating runs.\n\n"
        + table(["writes", "ms CPU per group (median)", "min", "max"], rows)
    )
    payload = {"groups": args.groups, "repeats": args.repeats, "G": G, "n": N,
               "ms_cpu_per_group": {name: values for name, values in results.items()}}
    write_results("redis_cache", payload, markdown)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
