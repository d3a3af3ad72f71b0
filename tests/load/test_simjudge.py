"""The simulated judge's cost model: latency, continuous batching, the prefix cache, and the
vLLM-shaped answers the service's fast paths read. In-process, on a fast time scale."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from cat_reward.loadtest.simjudge import CostModel, SimJudge, tokens_of


def _cost(**overrides) -> CostModel:
    base = dict(prefill_tokens_per_s=10_000.0, step_time_s=0.01, kv_read_s_per_token=0.0, max_num_seqs=8,
                max_num_batched_tokens=4096, block_size=16, kv_cache_tokens=100_000, time_scale=1.0)
    base.update(overrides)
    return CostModel(**base)


@pytest.mark.anyio
async def test_one_request_costs_prefill_plus_decode_steps():
    judge = SimJudge(_cost())
    judge.engine.start()
    try:
        prompt = "x" * 8000  # 2000 tokens: 0.2 s of prefill at 10k tokens/s
        started = time.monotonic()
        tokens, cached = await judge.engine.run(prompt, 30)  # first token in the prefill step, then 29 steps
        elapsed = time.monotonic() - started
        assert (tokens, cached) == (2000, 0)
        expected = 0.01 + 2000 / 10_000 + 29 * 0.01  # 0.5 s
        assert expected * 0.95 <= elapsed <= expected + 0.25, elapsed
        assert judge.stats.busy_s == pytest.approx(expected, rel=0.02)
        assert judge.stats.decode_tokens == 30
    finally:
        await judge.engine.stop()


@pytest.mark.anyio
async def test_the_prefix_cache_skips_blocks_already_computed():
    judge = SimJudge(_cost())
    judge.engine.start()
    try:
        shared = "s" * 64 * 20  # 20 full blocks of 16 tokens
        await judge.engine.run(shared + "first", 1)
        tokens, cached = await judge.engine.run(shared + "second one", 1)
        assert cached == 20 * 16 and tokens == tokens_of(shared + "second one")
        _, cached_other = await judge.engine.run("t" + shared, 1)  # same text, shifted: no prefix
        assert cached_other == 0
    finally:
        await judge.engine.stop()


@pytest.mark.anyio
async def test_continuous_batching_up_to_max_num_seqs():
    """16 identical-length sequences with room for 8: the second half waits for the first."""
    judge = SimJudge(_cost(max_num_seqs=8, prefix_caching=False))
    judge.engine.start()
    try:
        finished: list[float] = []
        started = time.monotonic()

        async def one(i: int) -> None:
            await judge.engine.run(f"prompt {i} " + "p" * 40, 20)
            finished.append(time.monotonic() - started)

        await asyncio.gather(*(one(i) for i in range(16)))
        finished.sort()
        assert judge.stats.max_running == 8
        assert finished[7] < 0.3 < finished[8], finished  # 8 at a time: ~0.2 s each wave
        assert finished[-1] == pytest.approx(2 * finished[7], rel=0.3)
    finally:
        await judge.engine.stop()


@pytest.mark.anyio
async def test_answers_look_like_vllm_for_the_fast_paths():
    judge = SimJudge(_cost(time_scale=0.01))
    async with TestClient(TestServer(judge.app())) as client:
        assert (await (await client.get("/version")).json())["version"]
        models = await (await client.get("/v1/models")).json()
        assert models["data"][0]["id"] == judge.model
        yes = (await (await client.post("/tokenize", json={"prompt": "yes", "add_special_tokens": False})).json())["tokens"]
        no = (await (await client.post("/tokenize", json={"prompt": "no", "add_special_tokens": False})).json())["tokens"]
        assert len(yes) == len(no) == 1
        body = {"model": judge.model, "prompt": ["a: ", "b: "], "max_tokens": 1, "allowed_token_ids": yes + no,
                "logprobs": 0, "logprob_token_ids": yes + no}
        answer = await (await client.post("/v1/completions", json=body, headers={"X-Session-ID": "g1"})).json()
        assert [c["index"] for c in answer["choices"]] == [0, 1]
        for choice in answer["choices"]:
            assert choice["text"] in ("yes", "no")
            assert set(choice["logprobs"]["top_logprobs"][0]) == {"yes", "no"}
        assert answer["usage"]["completion_tokens"] == 2
        rubric = await (await client.post("/v1/chat/completions", json={
            "model": judge.model, "max_tokens": 384,
            "messages": [{"role": "system", "content": "You write grading rubrics."},
                         {"role": "user", "content": "Write between 6 and 6 criteria that ..."}],
        })).json()
        import json

        assert len(json.loads(rubric["choices"][0]["message"]["content"])["criteria"]) == 6
        wrong = await client.post("/v1/completions", json={**body, "model": "other"})
        assert wrong.status == 404
        stats = await (await client.get("/stats")).json()
        assert stats["session_ids"] == 1 and stats["sequences"] == 3
