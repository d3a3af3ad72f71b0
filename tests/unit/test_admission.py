"""Admission control: a bounded number of groups scored and waiting per process; past that an
immediate 503 `overloaded` with Retry-After, before any LLM work."""

import asyncio

import httpx
import pytest
from prometheus_client import REGISTRY

from cat_reward.admission import Admission, Overloaded
from cat_reward.api import create_app
from cat_reward.engine.errors import InvalidGroup
from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.engine.ports import Roles
from cat_reward.settings import Settings

from .scripts import anchor_script, judge_script
from .test_api import BODY, ExactChecker

pytestmark = pytest.mark.anyio


async def until(condition, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def _rejections(reason: str) -> float:
    return REGISTRY.get_sample_value("cat_admission_rejections_total", {"reason": reason}) or 0.0


async def test_admits_up_to_active_plus_queued_then_refuses_at_once():
    admission = Admission(max_active=1, max_queued=1, queue_timeout_s=5)
    release = asyncio.Event()
    started = []

    async def group(name):
        async with admission.admit(1):
            async with admission.slot():
                started.append(name)
                await release.wait()

    first = asyncio.create_task(group("a"))
    second = asyncio.create_task(group("b"))
    await asyncio.sleep(0.01)
    assert started == ["a"] and admission.active == 1 and admission.waiting == 1
    with pytest.raises(Overloaded) as refused:
        async with admission.admit(1):
            pass
    assert "CAT_MAX_QUEUED_GROUPS" in refused.value.message and refused.value.retry_after >= 1
    release.set()
    await asyncio.gather(first, second)
    assert started == ["a", "b"] and admission.active == 0 and admission.waiting == 0
    async with admission.admit(2):  # room again
        pass


async def test_a_batch_is_admitted_whole_or_not_at_all():
    admission = Admission(max_active=2, max_queued=1, queue_timeout_s=5)
    with pytest.raises(InvalidGroup):  # could never fit
        async with admission.admit(4):
            pass
    async with admission.admit(1):
        with pytest.raises(Overloaded):  # does not fit now
            async with admission.admit(3):
                pass
        assert admission.waiting == 1  # nothing was reserved by the refusal
    async with admission.admit(3):
        assert admission.waiting == 3


async def test_waiting_longer_than_the_queue_timeout_is_refused():
    admission = Admission(max_active=1, max_queued=4, queue_timeout_s=0.05)
    release = asyncio.Event()

    async def hold():
        async with admission.admit(1), admission.slot():
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as refused:
        async with admission.admit(1), admission.slot():
            pass
    assert "CAT_QUEUE_TIMEOUT_S" in refused.value.message
    assert admission.waiting == 0 and admission.active == 1
    release.set()
    await holder
    async with admission.admit(1), admission.slot():  # the slot was given back
        assert admission.active == 1


@pytest.fixture
async def slow_client():
    opened = []

    async def make(latency_s: float, **settings):
        anchor = ScriptedLLM(anchor_script(), role="anchor", model="anchor-model", latency_s=latency_s)
        judge = ScriptedLLM(judge_script(lambda r, c: True), role="judge", model="judge-model")
        app = create_app(Settings(**settings), roles=Roles(anchor=anchor, judge=judge), checker=ExactChecker(), with_history=False)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=30)
        opened.append((client, lifespan))
        return client, anchor

    yield make
    for client, lifespan in opened:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_over_http_the_excess_group_gets_503_overloaded_and_costs_no_llm_call(slow_client):
    client, anchor = await slow_client(0.3, max_active_groups=1, max_queued_groups=1, cache_enabled=False)
    rejected_before = _rejections("queue_full")
    bodies = [{**BODY, "rollouts": [f"\\boxed{{{i}}}", "b"]} for i in range(3)]
    admission = client._transport.app.state.services.rewards.admission
    tasks = [asyncio.create_task(client.post("/rewards", json=bodies[0]))]
    await until(lambda: admission.active == 1)  # the first is being scored
    tasks.append(asyncio.create_task(client.post("/rewards", json=bodies[1])))
    await until(lambda: admission.waiting == 1)  # the second waits for the slot
    refused = await client.post("/rewards", json=bodies[2])
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["type"] == "overloaded" and error["status"] == 503
    assert int(refused.headers["Retry-After"]) >= 1
    answered = await asyncio.gather(*tasks)
    assert [r.status_code for r in answered] == [200, 200]
    prompts = [m["content"] for call in anchor.calls for m in call.messages if m["role"] == "user"]
    assert not any("\\boxed{2}" in p for p in prompts), "the refused group reached the anchor"
    assert _rejections("queue_full") == rejected_before + 1


async def test_a_batch_that_could_never_fit_is_a_422_not_a_retryable_503(slow_client):
    client, anchor = await slow_client(0.0, max_active_groups=1, max_queued_groups=1, cache_enabled=False)
    batch = {"groups": [{**BODY, "rollouts": [f"r{i}"]} for i in range(3)]}
    refused = await client.post("/rewards/batch", json=batch)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["param"] == "groups" and "CAT_MAX_QUEUED_GROUPS" in error["message"]
    assert "Retry-After" not in refused.headers
    assert anchor.calls == []
    fits = await client.post("/rewards/batch", json={"groups": batch["groups"][:2]})
    assert fits.status_code == 200 and all(item["ok"] for item in fits.json()["results"])


async def test_a_batch_without_room_now_is_refused_whole_before_any_llm_work(slow_client):
    client, anchor = await slow_client(0.3, max_active_groups=1, max_queued_groups=2, cache_enabled=False)
    single = asyncio.create_task(client.post("/rewards", json={**BODY, "rollouts": ["busy"]}))
    await until(lambda: len(anchor.calls) == 1)  # it holds the slot
    calls_before = len(anchor.calls)
    batch = {"groups": [{**BODY, "rollouts": [f"r{i}"]} for i in range(3)]}
    refused = await client.post("/rewards/batch", json=batch)  # 1 in progress + 3 > 1 + 2
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "overloaded"
    assert int(refused.headers["Retry-After"]) >= 1
    assert len(anchor.calls) == calls_before
    assert (await single).status_code == 200


async def test_an_admitted_batch_is_scored_whole_however_long_its_groups_wait(slow_client):
    """Its groups wait for the one slot longer than the queue timeout: no group is dropped."""
    client, anchor = await slow_client(
        0.3, max_active_groups=1, max_queued_groups=4, queue_timeout_s=0.2, batch_concurrency=3, cache_enabled=False
    )
    batch = {"groups": [{**BODY, "rollouts": [f"r{i}"]} for i in range(3)]}
    response = await client.post("/rewards/batch", json=batch)
    assert response.status_code == 200, response.text
    assert [item["ok"] for item in response.json()["results"]] == [True, True, True]


def test_active_groups_default_grows_with_the_judge_pool():
    """Unset, the active-groups bound is 64 per judge server: a pool of N judges is fed N times the
    groups (a fixed 64 left 4 judges decoding a quarter of the sequences per step each)."""
    one = Settings(_env_file=None, anchor_base_url="http://127.0.0.1:1/v1")
    assert one.active_groups == 64 and one.batch_groups_at_once == 64
    urls = Settings(_env_file=None, anchor_base_url="http://127.0.0.1:1/v1,http://127.0.0.1:2/v1")
    assert urls.active_groups == 128
    # the judge's own list counts when it is the longer one
    judges = Settings(_env_file=None, anchor_base_url="http://127.0.0.1:1/v1",
                      judge_base_url="http://127.0.0.1:2/v1,http://127.0.0.1:3/v1,http://127.0.0.1:4/v1")
    assert judges.active_groups == 3 * 64
    # one URL that is a router in front of 4 judges
    router = Settings(_env_file=None, anchor_base_url="http://127.0.0.1:1/v1", llm_servers_per_url=4)
    assert router.active_groups == 256 and router.batch_groups_at_once == 256
    # set explicitly, each wins
    fixed = Settings(_env_file=None, anchor_base_url="http://127.0.0.1:1/v1", llm_servers_per_url=4,
                     max_active_groups=10, batch_concurrency=3)
    assert fixed.active_groups == 10 and fixed.batch_groups_at_once == 3


async def test_a_batch_is_scored_all_at_once_up_to_the_active_groups_bound(slow_client):
    """A trainer's step in one /rewards/batch: its groups' anchor calls run side by side (a fixed
    16 at a time used to leave a judge pool half idle), and an explicit CAT_BATCH_CONCURRENCY caps them."""
    for settings, expected in (({}, 32), ({"batch_concurrency": 4}, 4)):
        client, anchor = await slow_client(0.2, cache_enabled=False, **settings)
        running, peak = 0, 0
        chat = anchor.chat

        async def counted(request, chat=chat):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                return await chat(request)
            finally:
                running -= 1

        anchor.chat = counted
        batch = {"groups": [{**BODY, "rollouts": [f"r{i}", "b"]} for i in range(32)]}
        response = await client.post("/rewards/batch", json=batch)
        assert response.status_code == 200, response.text
        assert all(item["ok"] for item in response.json()["results"])
        assert peak == expected, (settings, peak)


def _gauges() -> tuple:
    return tuple(
        REGISTRY.get_sample_value(name)
        for name in ("cat_groups_active", "cat_groups_queued", "cat_reward_inflight_groups")
    )


async def test_a_free_slot_is_taken_without_arming_a_timeout(monkeypatch):
    import cat_reward.admission as admission_module

    armed = []
    real_wait_for = asyncio.wait_for

    async def spy(awaitable, timeout):
        armed.append(timeout)
        return await real_wait_for(awaitable, timeout)

    monkeypatch.setattr(admission_module.asyncio, "wait_for", spy)
    admission = Admission(max_active=1, max_queued=1, queue_timeout_s=0.05)
    async with admission.admit(1):
        async with admission.slot():
            assert armed == []  # free: taken at once
            async with admission.admit(1):
                with pytest.raises(Overloaded):  # busy: waits, with the timeout, as before
                    async with admission.slot():
                        pass
            assert armed == [0.05]


async def test_the_gauges_follow_every_change_whichever_admission_wrote_last():
    a = Admission(max_active=2, max_queued=2, queue_timeout_s=5)
    b = Admission(max_active=2, max_queued=2, queue_timeout_s=5)
    async with a.admit(2):
        assert _gauges() == (0, 2, 2)
        async with a.slot():
            assert _gauges() == (1, 1, 2)
            async with b.admit(1):  # another instance writes its own state (last writer wins, as before)
                assert _gauges() == (0, 1, 1)
            assert _gauges() == (0, 0, 0)
            async with a.slot():
                assert _gauges() == (2, 0, 2)
            assert _gauges() == (1, 1, 2)
        assert _gauges() == (0, 2, 2)
    assert _gauges() == (0, 0, 0)
