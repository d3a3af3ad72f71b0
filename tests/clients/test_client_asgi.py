"""The async client against the real service app, in-process (httpx.ASGITransport), with
scripted anchor and judge: the client reads what the server really sends."""

from __future__ import annotations

import importlib.util
import json

import httpx
import pytest

# Skip only where the service is absent (a client-only environment); a service that is
# installed but fails to import must fail here, not hide behind a skip.
if importlib.util.find_spec("cat_reward") is None:
    pytest.skip("the cat-reward service is not installed in this environment", allow_module_level=True)

from cat_reward.api import create_app  # noqa: E402
from cat_reward.backends.scripted import ScriptedLLM  # noqa: E402
from cat_reward.engine.errors import LLMUnavailable  # noqa: E402
from cat_reward.engine.ports import ChatRequest, Roles  # noqa: E402
from cat_reward.settings import Settings  # noqa: E402

from cat_reward_client import (  # noqa: E402
    AsyncCatRewardClient,
    InvalidRequestError,
    RewardGroup,
    UnavailableError,
    UpstreamError,
)

pytestmark = pytest.mark.anyio

CRITERIA = [
    "The response states a single final numeric answer.",
    "The response explains that six times seven is computed by multiplication.",
    "The response gives the value forty-two as the product.",
    "The response does not contradict itself about the result.",
    "The response is short and stays on the question asked.",
]


def anchor_script(request: ChatRequest) -> str:
    text = request.messages[-1]["content"]
    if request.stage == "synthesis":
        if "BROKEN" in text:
            return "BROKEN reference"
        return "Six times seven is forty-two, so the answer is 42."
    if request.stage == "rubric":
        if "BROKEN" in text:
            return "I cannot think of any criteria."
        return json.dumps({"criteria": CRITERIA})
    raise AssertionError(f"unexpected anchor stage {request.stage}")


def judge_script(request: ChatRequest) -> str:
    assert request.stage == "verdict"
    response, criterion = request.messages[-1]["content"].split("</response>")
    if "code word" in criterion:  # the hacking canary: no answer contains it
        return "no"
    return "yes" if "42" in response else "no"


def judge_down(request: ChatRequest) -> str:
    raise LLMUnavailable("judge endpoint refused the connection", role="judge", retry_after=2.0)


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the HTTP attempts that reach the app."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)


def build_app(judge=judge_script):
    roles = Roles(anchor=ScriptedLLM(anchor_script, role="anchor"), judge=ScriptedLLM(judge, role="judge"))
    return create_app(Settings(), roles=roles)


@pytest.fixture
async def served():
    app = build_app()
    async with app.router.lifespan_context(app):
        transport = CountingTransport(httpx.ASGITransport(app=app))
        async with AsyncCatRewardClient("http://cat-reward.test", transport=transport) as client:
            yield client, transport


async def test_rewards_end_to_end(served):
    client, transport = served
    result = await client.rewards("What is 6 x 7?", ["It is 42.", "It is 41.", "42"], idempotency_key="g-1")
    assert result.rewards == [1.0, 0.0, 1.0]
    assert result.mode == "rubric" and result.aggregator == "synthesis"
    assert result.reference == "Six times seven is forty-two, so the answer is 42."
    assert [c.text for c in result.rubric] == CRITERIA
    assert result.rubric_id is not None and result.rubric_id.startswith("rb_")
    assert [d.index for d in result.details] == [0, 1, 2]
    assert all(len(d.verdicts) == 5 for d in result.details)
    assert all(v.met is False for v in result.details[1].verdicts)
    assert result.provenance.prompt_version
    assert result.usage.stages["verdict"].calls == 15 + 3  # 3 x 5 criteria, and a canary per rollout
    assert result.raw["rewards"] == [1.0, 0.0, 1.0]
    assert transport.requests[0].headers["idempotency-key"] == "g-1"


async def test_scoring_options_and_record(served):
    client, _ = served
    result = await client.rewards(
        "What is 6 x 7?", ["It is 42.", "It is 41."], options={"aggregation": "all_essential", "essential_factor": 0.5},
        rubric=[{"criterion": "The response gives 42.", "points": 2, "importance": "essential"},
                {"criterion": "The response gives 41.", "points": -1, "importance": "pitfall"}],
    )
    # The scripted judge says yes to everything in a response holding "42", the pitfall too:
    # (1.0 - 0.6) / 1.0 with the default map, halved as an essential-or-pitfall miss; the other misses its essential.
    assert result.rewards == pytest.approx([0.2, 0.0])
    assert result.scoring["aggregation"] == "all_essential" and result.scoring["essential_factor"] == 0.5
    assert result.scoring["criterion_weights"] == {"s1": 1.0, "s2": -0.6}
    assert [c.importance for c in result.rubric] == ["essential", "pitfall"]
    assert result.details[0].length is None


async def test_health_and_readiness(served):
    client, _ = served
    health = await client.healthz()
    ready = await client.readyz()
    assert health.status == "ok" and health.version
    assert ready.ready is True and {r["role"] for r in ready.roles} == {"anchor", "judge"}


async def test_invalid_request_is_typed_and_not_retried(served, sleeps):
    client, transport = served
    with pytest.raises(InvalidRequestError) as info:
        await client.rewards("What is 6 x 7?", [])
    assert info.value.status == 422 and info.value.param == "rollouts"
    assert info.value.details and info.value.details[0]["param"] == "rollouts"
    with pytest.raises(InvalidRequestError) as info:
        await client.rewards("p", ["a"], reference="42", options={"aggregator": "synthesis"})
    assert info.value.param == "reference"
    assert len(transport.requests) == 2 and sleeps == []


async def test_batch_items_fail_on_their_own(served):
    client, _ = served
    batch = await client.rewards_batch(
        [RewardGroup("What is 6 x 7?", ["42", "41"]), RewardGroup("What is 6 x 7?", ["BROKEN", "BROKEN too"])]
    )
    assert [item.ok for item in batch] == [True, False]
    assert batch.rewards == [[1.0, 0.0], None]
    assert batch[1].error is not None and batch[1].error.type == "rubric_generation_failed"
    with pytest.raises(UpstreamError):
        batch[1].unwrap()


async def test_unavailable_judge_is_retried_then_raised(sleeps):
    app = build_app(judge=judge_down)
    async with app.router.lifespan_context(app):
        transport = CountingTransport(httpx.ASGITransport(app=app))
        async with AsyncCatRewardClient("http://cat-reward.test", transport=transport, max_retries=2) as client:
            with pytest.raises(UnavailableError) as info:
                await client.rewards("What is 6 x 7?", ["42"])
    exc = info.value
    assert (exc.status, exc.type, exc.retry_after, exc.attempts) == (503, "llm_unavailable", 2.0, 3)
    assert len(transport.requests) == 3 and len(sleeps) == 2
    assert all(2.0 <= s <= 2.2 for s in sleeps)
    assert len({r.headers["idempotency-key"] for r in transport.requests}) == 1
