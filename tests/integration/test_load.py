"""A bounded load test on loopback: many concurrent trainer clients against a real `serve`
process (stub LLM, SQLite history). Every request is answered, and the history holds exactly one
record per scored group: none lost, none duplicated. p50/p99 are printed (`-s` shows them)."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx

from tests.support.service import serve, stop
from tests.support.stub_llm import StubServer

CLIENTS = 16
REQUESTS_PER_CLIENT = 10


async def _client(url: str, client_id: int, latencies: list[float], statuses: list[int]) -> list[str]:
    ids = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for i in range(REQUESTS_PER_CLIENT):
            body = {
                "prompt": f"Client {client_id}: what is {i} + 1?",
                "rollouts": [f"\\boxed{{{i + 1}}}", f"\\boxed{{{i}}}", "no idea"],
                "mode": "rubric" if i % 2 else "verifiable",
                "metadata": {"run_id": "load-test", "step": i, "group_id": f"c{client_id}"},
            }
            started = time.perf_counter()
            response = await http.post("/rewards", json=body)
            latencies.append(time.perf_counter() - started)
            statuses.append(response.status_code)
            if response.status_code == 200:
                ids.append(response.json()["record_id"])
    return ids


async def _run(url: str):
    latencies: list[float] = []
    statuses: list[int] = []
    started = time.perf_counter()
    results = await asyncio.wait_for(
        asyncio.gather(*[_client(url, c, latencies, statuses) for c in range(CLIENTS)]), timeout=300
    )
    return [i for ids in results for i in ids], latencies, statuses, time.perf_counter() - started


def test_concurrent_trainers_lose_and_duplicate_nothing(tmp_path):
    with StubServer() as stub:
        process, url, log = serve(tmp_path, CAT_ANCHOR_BASE_URL=stub.url, CAT_ANCHOR_MODEL="stub-model",
                                  CAT_LOG_LEVEL="WARNING")
        try:
            ids, latencies, statuses, wall = asyncio.run(_run(url))
            total = CLIENTS * REQUESTS_PER_CLIENT
            assert statuses == [200] * total, {s: statuses.count(s) for s in set(statuses)}
            assert len(set(ids)) == total
            q = statistics.quantiles(latencies, n=100)
            print(f"\nload: {total} requests from {CLIENTS} clients in {wall:.1f} s; "
                  f"p50 {q[49] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms")

            # Every record lands in the database once (the outbox drains in the background).
            deadline = time.monotonic() + 60
            while True:
                seen, cursor = [], None
                while True:
                    params = {"run_id": "load-test", "limit": 500} | ({"cursor": cursor} if cursor else {})
                    page = httpx.get(f"{url}/rubrics", params=params, timeout=30).json()
                    seen += [item["id"] for item in page["items"]]
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                if len(seen) >= total or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert sorted(seen) == sorted(ids)  # none lost, none twice
        finally:
            stop(process)
        assert "Traceback" not in log.read_text()
