"""Group assembly through POST /rewards/samples: in-process store and Redis shared by replicas."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from cat_reward.api import create_app
from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.engine import LLMUnavailable
from cat_reward.engine.ports import EquivalenceResult, Roles
from cat_reward.settings import Settings
from tests.unit.scripts import anchor_script, judge_script

from .conftest import REDIS_URL

pytestmark = pytest.mark.anyio


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference.strip() == candidate.strip())


class Replica:
    """One service process, in-process: its own app, anchor and judge; shared state only via Redis."""

    def __init__(self, settings: Settings, judge=None, anchor_latency_s: float = 0.0):
        self.anchor = ScriptedLLM(anchor_script(), role="anchor", model="a", latency_s=anchor_latency_s)
        self.judge = ScriptedLLM(judge or judge_script(lambda r, c: "5" in r), role="judge", model="j")
        self.app = create_app(settings, roles=Roles(anchor=self.anchor, judge=self.judge), checker=ExactChecker(),
                              with_history=False)

    async def __aenter__(self):
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test", timeout=60)
        return self

    async def __aexit__(self, *exc):
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)

    def syntheses(self) -> int:
        return sum(1 for c in self.anchor.calls if c.stage == "synthesis")


@pytest.fixture(params=["memory", "redis"])
def settings(request, redis_namespace, tmp_path):
    common = dict(data_dir=tmp_path, group_deadline_s=30)
    if request.param == "redis":
        return Settings(redis_url=REDIS_URL, cache_prefix=redis_namespace.rstrip(":"), **common)
    return Settings(**common)


def sample_body(rollouts, size, group_id=None, index=None, **group):
    return {
        "prompt": "What is 2 + 3?",
        "samples": [{"rollout": r, **({"index": index} if index is not None else {})} for r in rollouts],
        "group": {"id": group_id or uuid.uuid4().hex, "size": size, **group},
        "mode": "rubric",
    }


ROLLOUTS = ["\\boxed{5}", "it is 6", "five is 5", "no idea"]


async def test_one_sample_per_request_scores_the_group_once(settings):
    async with Replica(settings) as r:
        gid = uuid.uuid4().hex
        responses = await asyncio.gather(
            *[r.client.post("/rewards/samples", json=sample_body([x], 4, gid)) for x in ROLLOUTS]
        )
        assert all(resp.status_code == 200 for resp in responses), [resp.text for resp in responses]
        data = [resp.json() for resp in responses]
        assert sorted(d["indices"][0] for d in data) == [0, 1, 2, 3]
        assert r.syntheses() == 1
        assert sum(1 for c in r.anchor.calls if c.stage == "rubric") == 1
        group_rewards = data[0]["result"]["rewards"]
        assert all(d["result"]["rewards"] == group_rewards for d in data)
        for d, rollout in zip(data, ROLLOUTS):
            assert d["rewards"] == [group_rewards[d["indices"][0]]]
            assert d["rewards"] == [1.0 if "5" in rollout else 0.0]
            assert d["group"] == {"key": d["group"]["key"], "size": 4, "scored": 4, "partial": False}


async def test_part_groups_and_explicit_indices(settings):
    async with Replica(settings) as r:
        gid = uuid.uuid4().hex
        a, b = await asyncio.gather(
            r.client.post("/rewards/samples", json=sample_body(ROLLOUTS[2:], 4, gid) | {"samples": [
                {"rollout": ROLLOUTS[2], "index": 2}, {"rollout": ROLLOUTS[3], "index": 3}]}),
            r.client.post("/rewards/samples", json=sample_body(ROLLOUTS[:2], 4, gid)),
        )
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert a.json()["indices"] == [2, 3] and b.json()["indices"] == [0, 1]
        assert a.json()["result"]["rewards"] == [1.0, 0.0, 1.0, 0.0]
        assert r.syntheses() == 1


async def test_default_key_is_prompt_plus_step(settings):
    async with Replica(settings) as r:
        step = uuid.uuid4().int % 10_000

        def body(x):
            b = sample_body([x], 2, step=step)
            del b["group"]["id"]
            return b

        a, b = await asyncio.gather(*[r.client.post("/rewards/samples", json=body(x)) for x in ROLLOUTS[:2]])
        assert a.json()["group"]["key"] == b.json()["group"]["key"]
        assert a.json()["group"]["scored"] == 2


async def test_deadline_scores_a_partial_group(settings):
    async with Replica(settings) as r:
        gid = uuid.uuid4().hex
        responses = await asyncio.gather(
            *[r.client.post("/rewards/samples", json=sample_body([x], 4, gid, deadline_s=0.5, min_size=2))
              for x in ROLLOUTS[:3]]
        )
        data = [resp.json() for resp in responses]
        assert all(d["group"]["partial"] and d["group"]["scored"] == 3 for d in data)
        assert len(data[0]["result"]["rewards"]) == 3


async def test_deadline_with_too_few_samples_is_an_explicit_error(settings):
    async with Replica(settings) as r:
        response = await r.client.post(
            "/rewards/samples", json=sample_body([ROLLOUTS[0]], 4, deadline_s=0.3, min_size=2)
        )
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["type"] == "group_incomplete" and "1 of 4" in error["message"]
        assert r.syntheses() == 0


async def test_conflicts(settings):
    async with Replica(settings) as r:
        gid = uuid.uuid4().hex
        first = asyncio.create_task(r.client.post("/rewards/samples", json=sample_body(["a"], 2, gid, index=0)))
        await asyncio.sleep(0.1)
        clash = await r.client.post("/rewards/samples", json=sample_body(["b"], 2, gid, index=0))
        assert clash.status_code == 409 and clash.json()["error"]["type"] == "group_conflict"
        other_size = await r.client.post("/rewards/samples", json=sample_body(["c"], 3, gid))
        assert other_size.status_code == 409 and "size" in other_size.json()["error"]["message"]
        await r.client.post("/rewards/samples", json=sample_body(["d"], 2, gid, index=1))
        assert (await first).status_code == 200
        late = await r.client.post("/rewards/samples", json=sample_body(["e"], 2, gid))
        assert late.status_code == 409 and "already has its 2 samples" in late.json()["error"]["message"]
        outside = await r.client.post("/rewards/samples", json=sample_body(["f"], 2, index=5))
        assert outside.status_code == 422 and outside.json()["error"]["param"] == "samples"


async def test_retry_with_the_same_idempotency_key_is_free(settings):
    async with Replica(settings) as r:
        gid = uuid.uuid4().hex
        bodies = [sample_body([x], 2, gid) for x in ROLLOUTS[:2]]
        first = await asyncio.gather(
            *[r.client.post("/rewards/samples", json=b, headers={"Idempotency-Key": f"k{i}"}) for i, b in enumerate(bodies)]
        )
        calls = len(r.anchor.calls) + len(r.judge.calls)
        again = await r.client.post("/rewards/samples", json=bodies[1], headers={"Idempotency-Key": "k1"})
        assert again.status_code == 200
        assert again.json()["indices"] == first[1].json()["indices"]
        assert again.json()["rewards"] == first[1].json()["rewards"]
        assert len(r.anchor.calls) + len(r.judge.calls) == calls


async def test_a_failed_attempt_is_reported_then_retried(settings):
    state = {"down": True}
    base = judge_script(lambda r, c: True)

    def judge(request):
        if state["down"]:
            raise LLMUnavailable("judge down", role="judge", retry_after=2)
        return base(request)

    async with Replica(settings, judge=judge) as r:
        gid = uuid.uuid4().hex
        failed = await asyncio.gather(*[r.client.post("/rewards/samples", json=sample_body([x], 2, gid)) for x in ROLLOUTS[:2]])
        assert [f.status_code for f in failed] == [503, 503]
        assert failed[0].json()["error"]["type"] == "llm_unavailable" and failed[0].headers["retry-after"] == "2"
        state["down"] = False
        # The trainer retries one sample as it first sent it (no index): the full group knows it.
        retried = await r.client.post("/rewards/samples", json=sample_body([ROLLOUTS[0]], 2, gid))
        assert retried.status_code == 200, retried.text
        assert retried.json()["result"]["rewards"] == [1.0, 1.0]


async def test_two_replicas_share_the_group(redis_namespace, tmp_path):
    settings = Settings(redis_url=REDIS_URL, cache_prefix=redis_namespace.rstrip(":"), data_dir=tmp_path)
    async with Replica(settings) as a, Replica(settings) as b:
        gid = uuid.uuid4().hex
        responses = await asyncio.gather(
            *[(a if i % 2 == 0 else b).client.post("/rewards/samples", json=sample_body([x], 4, gid))
              for i, x in enumerate(ROLLOUTS)]
        )
        assert all(resp.status_code == 200 for resp in responses), [resp.text for resp in responses]
        assert a.syntheses() + b.syntheses() == 1  # scored once, by one of them
        assert len({tuple(resp.json()["result"]["rewards"]) for resp in responses}) == 1


async def test_a_replica_that_dies_while_scoring_is_replaced(redis_namespace, tmp_path):
    """Replica A takes the whole group and dies mid-scoring; the trainer's retry on replica B
    waits, claims the group when A's lease runs out, and scores it."""
    settings = Settings(
        redis_url=REDIS_URL, cache_prefix=redis_namespace.rstrip(":"), data_dir=tmp_path, group_scoring_lease_s=1.0
    )
    async with Replica(settings, anchor_latency_s=60) as a, Replica(settings) as b:
        gid = uuid.uuid4().hex
        body = sample_body(ROLLOUTS[:2], 2, gid)
        dying = asyncio.create_task(a.client.post("/rewards/samples", json=body))
        for _ in range(100):
            if a.syntheses():
                break
            await asyncio.sleep(0.02)
        assert a.syntheses() == 1  # A claimed the group and is stuck in a slow synthesis
        dying.cancel()  # ...and goes away, its claim left behind in Redis
        retry = await b.client.post("/rewards/samples", json=sample_body(ROLLOUTS[1:2], 2, gid, index=1))
        assert retry.status_code == 200, retry.text
        assert retry.json()["group"]["scored"] == 2 and retry.json()["indices"] == [1]
        assert b.syntheses() == 1


async def test_the_in_process_store_forgets_expired_groups_and_counters():
    """Keys that are never looked up again (every finished group of a long run) are swept."""
    import time

    from cat_reward.assembly import MemoryAssemblyStore

    store = MemoryAssemblyStore(sweep_interval_s=0.0)
    for n in range(20):
        await store.add(f"old/{n}", {"prompt": "p"}, 2, [(None, f"r{n}")], ttl_s=0.05)
        await store.advance_generation(f"series-{n}", 0, ttl_s=0.05)
    assert len(store._groups) == 20 and len(store._generations) == 20
    time.sleep(0.1)
    await store.add("new/0", {"prompt": "p"}, 2, [(None, "r")], ttl_s=60)
    assert list(store._groups) == ["new/0"] and store._generations == {}
    assert await store.received("new/0") == 1
