"""The judge pool of a plain URL list, through the OpenAI-compatible client: a 256-group burst
stays within the per-endpoint bound and every verdict comes back; the group key travels as
X-Session-ID; an endpoint unreachable at start is named and routed around; with every endpoint
down a request answers 503 llm_unavailable with Retry-After at once. Fake vLLM endpoints over
httpx.MockTransport, and for the last test a real closed loopback port."""

import asyncio
import json
import logging
import time
from collections import Counter

import httpx
import pytest

from cat_reward.api import create_app
from cat_reward.backends.openai_compat import OpenAICompatClient
from cat_reward.engine import ChatRequest
from cat_reward.metrics import JUDGE_OUTSTANDING_REQUESTS, JUDGE_QUEUE_DEPTH
from cat_reward.settings import Settings
from tests.support.service import free_port

from .fake_vllm import FakeVLLM

pytestmark = pytest.mark.anyio

HOSTS = ["j0", "j1", "j2", "j3"]


class Endpoints:
    """Several fake vLLM endpoints (one per host) recording what each one holds in flight."""

    def __init__(self, delay_s=0.0, down=()):
        self.fake = FakeVLLM(delay_s=delay_s)
        self.down = set(down)
        self.inflight = Counter()
        self.peak = Counter()
        self.seen = []  # (host, path, X-Session-ID)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        body = json.loads(request.content) if request.content else {}
        prompts = len(body["prompt"]) if request.url.path == "/v1/completions" and isinstance(body.get("prompt"), list) else 1
        self.seen.append((host, request.url.path, request.headers.get("x-session-id")))
        self.inflight[host] += prompts
        self.peak[host] = max(self.peak[host], self.inflight[host])
        try:
            return await self.fake.handle(request)
        finally:
            self.inflight[host] -= prompts


def judge(endpoints: Endpoints, hosts=HOSTS, role="judge", **kwargs) -> OpenAICompatClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(endpoints))
    return OpenAICompatClient(
        role=role, model="m", base_urls=[f"http://{h}/v1" for h in hosts], http=http, kind="vllm",
        backoff_base_s=0.001, **kwargs
    )


def gauge(metric, **labels) -> float:
    return metric.labels(**labels)._value.get()


async def test_a_256_group_burst_is_bounded_per_endpoint_and_fully_answered():
    endpoints = Endpoints(delay_s=0.01)
    llm = judge(endpoints, role="judge-burst", endpoint_max_prompts=128, score_batch_size=64, score_max_inflight=4)
    assert await llm.yes_no_scoring()
    groups = [[f"group {g} verdict {i}" for i in range(64)] for g in range(256)]
    seen_depth = []

    async def watch():
        while True:
            seen_depth.append(gauge(JUDGE_QUEUE_DEPTH, role="judge-burst"))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*[llm.score_yes_no(p, session=f"g{g}") for g, p in enumerate(groups)]), timeout=120
    )
    watcher.cancel()
    assert [len(r) for r in results] == [64] * 256
    assert all(s.text in ("yes", "no", "Yes", "No") for r in results for s in r)
    # No endpoint ever held more than its bound, and all four were used about evenly.
    assert max(endpoints.peak.values()) <= 128
    used = Counter(host for host, path, _ in endpoints.seen if path == "/v1/completions")
    assert set(used) == set(HOSTS) and max(used.values()) - min(used.values()) <= 2, used
    # The backlog was visible as queue depth while it lasted, and everything drained.
    assert max(seen_depth) > 0
    assert gauge(JUDGE_QUEUE_DEPTH, role="judge-burst") == 0
    assert [gauge(JUDGE_OUTSTANDING_REQUESTS, role="judge-burst", endpoint=f"http://{h}/v1") for h in HOSTS] == [0] * 4
    assert time.monotonic() - started < 60


async def test_batch_bounds_scale_with_endpoints():
    one = judge(Endpoints(), hosts=HOSTS[:1], score_max_inflight=4)
    four = judge(Endpoints(), hosts=HOSTS, score_max_inflight=4)
    assert one._coalescer.max_inflight == 4 and four._coalescer.max_inflight == 16
    # One URL for 4 judges behind a router: CAT_LLM_SERVERS_PER_URL multiplies the per-URL bounds.
    from cat_reward.wiring import build_roles

    async with httpx.AsyncClient() as http:
        routed = build_roles(Settings(anchor_base_url=["http://router/v1"], llm_servers_per_url=4), http).judge
        assert routed._coalescer.max_inflight == 16
        assert (routed.pool.max_prompts, routed.pool.max_requests) == (4 * 512, 4 * 64)


async def test_the_group_key_travels_as_a_session_header():
    endpoints = Endpoints()
    llm = judge(endpoints, hosts=HOSTS[:1])
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}], stage="rubric", max_tokens=4, session="cat-abc")
    await llm.chat(request)
    assert endpoints.seen[-1] == ("j0", "/v1/chat/completions", "cat-abc")
    # A batch mixing groups carries the key of the group with most prompts in it.
    await asyncio.gather(llm.score_yes_no(["a1", "a2"], session="cat-a"), llm.score_yes_no(["b1"], session="cat-b"))
    assert [s for _, path, s in endpoints.seen if path == "/v1/completions"][-1] == "cat-a"
    # CAT_LLM_SESSION_HEADER empty: no header.
    quiet = judge(endpoints, hosts=HOSTS[:1], session_header=None)
    await quiet.chat(request)
    assert endpoints.seen[-1][2] is None


async def test_the_engine_passes_one_key_per_group(tmp_path):
    from cat_reward.backends.scripted import ScriptedLLM
    from cat_reward.engine.ports import EquivalenceResult, Roles
    from tests.unit.scripts import anchor_script, judge_script

    class Exact:
        async def check(self, reference, candidate):
            return EquivalenceResult(reference == candidate)

    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    judge_llm = ScriptedLLM(judge_script(lambda r, c: True), role="judge", model="j")
    app = create_app(Settings(data_dir=tmp_path, cache_enabled=False), roles=Roles(anchor=anchor, judge=judge_llm), checker=Exact(), with_history=False)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            body = {"prompt": "What is 2 + 3?", "rollouts": ["5", "6"], "mode": "rubric"}
            for rollouts in (["5", "6"], ["5", "7"], ["5", "6"]):
                assert (await client.post("/rewards", json={**body, "rollouts": rollouts})).status_code == 200
    keys = [c.session for c in anchor.calls + judge_llm.calls]
    assert all(k and k.startswith("cat-") for k in keys)
    # Same group (the 1st and 3rd request), same key; another group, another key.
    first = {c.session for c in anchor.calls[:2]}
    assert len(first) == 1 and anchor.calls[4].session in first and anchor.calls[2].session not in first


async def test_an_endpoint_unreachable_at_start_is_named_and_routed_around(caplog):
    endpoints = Endpoints(down={"j1"})
    llm = judge(endpoints, hosts=HOSTS[:2], breaker_cooldown_s=60)
    with caplog.at_level(logging.WARNING):
        assert await llm.check_endpoints(1.0) == ["http://j1/v1"]
    assert "http://j1/v1 is unreachable at start" in caplog.text
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}], stage="verdict", max_tokens=1)
    for _ in range(6):
        assert (await llm.chat(request)).text == "yes"
    assert {host for host, path, _ in endpoints.seen if path == "/v1/chat/completions"} == {"j0"}


@pytest.mark.parametrize("n_dead", [1, 2], ids=["router-down", "all-of-a-list-down"])
async def test_every_endpoint_down_is_a_503_with_retry_after_not_a_hang(tmp_path, n_dead, caplog):
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(n_dead)]  # nothing listens there
    settings = Settings(
        data_dir=tmp_path, anchor_base_url=dead, anchor_backend="vllm", llm_max_retries=2, llm_connect_timeout_s=2,
        verify_workers=1,
    )
    app = create_app(settings, with_history=False)  # the service builds its own clients, as in production
    with caplog.at_level(logging.WARNING):
        async with app.router.lifespan_context(app):  # it starts, naming each unreachable endpoint
            for url in dead:
                assert f"{url} is unreachable at start" in caplog.text
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                started = time.monotonic()
                response = await asyncio.wait_for(
                    client.post("/rewards", json={"prompt": "2+3?", "rollouts": ["5", "6"]}), timeout=30
                )
                elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "llm_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert elapsed < 10


def test_bad_sizes_are_usage_errors():
    from pydantic import ValidationError

    for bad in ({"llm_endpoint_max_inflight": 0}, {"llm_max_inflight": -1}, {"anchor_base_url": ""}):
        with pytest.raises(ValidationError) as info:
            Settings(**bad)
        assert next(iter(bad)) in str(info.value)
