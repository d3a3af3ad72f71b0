"""rewards_samples (POST /rewards/samples) on both clients: request building, idempotency keys,
parsing, errors and retries over httpx.MockTransport; then the async client against the real
app in-process, one sample per call, as a trainer that sends samples one by one does."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import uuid

import httpx
import pytest

from cat_reward_client import (
    AsyncCatRewardClient,
    CatRewardClient,
    GroupStatus,
    InvalidRequestError,
    ResponseDecodeError,
    SampleGroup,
    SamplesResult,
    UnavailableError,
)
from cat_reward_client._core import ClientCore

from .conftest import make_reward_body


def samples_body(rewards_of_group, indices, *, key="id:abc", partial=False):
    group = make_reward_body(rewards_of_group)
    return {
        "rewards": [group["rewards"][i] for i in indices],
        "indices": indices,
        "details": [group["details"][i] for i in indices],
        "group": {"key": key, "size": len(rewards_of_group), "scored": len(rewards_of_group), "partial": partial},
        "result": group,
    }


# --- request building ------------------------------------------------------------------


def test_body_carries_samples_group_and_the_group_fields():
    spec = ClientCore().rewards_samples(
        [{"role": "user", "content": "What is 6 x 7?"}],
        ["42", {"rollout": "41", "index": 3}],
        SampleGroup(size=4, id="uid-1", deadline_s=30.0),
        mode="verifiable",
        reference="42",
        options={"seed": 1, "judge_temperature": None},
        metadata={"run_id": "r", "step": 2},
    )
    assert (spec.method, spec.path) == ("POST", "/rewards/samples")
    assert json.loads(spec.body) == {
        "prompt": [{"role": "user", "content": "What is 6 x 7?"}],
        "samples": [{"rollout": "42"}, {"rollout": "41", "index": 3}],
        "group": {"size": 4, "id": "uid-1", "deadline_s": 30.0},
        "mode": "verifiable",
        "reference": "42",
        "options": {"seed": 1},
        "metadata": {"run_id": "r", "step": 2},
    }
    assert "rollouts" not in json.loads(spec.body)


def test_group_may_be_a_mapping():
    spec = ClientCore().rewards_samples("p", ["a"], {"size": 2, "step": 7})
    assert json.loads(spec.body)["group"] == {"size": 2, "step": 7}


def test_default_key_is_random_per_call_without_indices_and_the_body_hash_with_them():
    core = ClientCore()
    first = core.rewards_samples("p", ["same"], {"size": 2, "id": "g"})
    second = core.rewards_samples("p", ["same"], {"size": 2, "id": "g"})
    # Identical bodies, two distinct samples of the group: two keys.
    assert first.body == second.body
    assert first.header("Idempotency-Key") != second.header("Idempotency-Key")
    placed = core.rewards_samples("p", [{"rollout": "same", "index": 1}], {"size": 2, "id": "g"})
    assert placed.header("Idempotency-Key") == hashlib.sha256(placed.body).hexdigest()
    chosen = core.rewards_samples("p", ["same"], {"size": 2}, idempotency_key="run/3/7")
    assert chosen.header("Idempotency-Key") == "run/3/7"


@pytest.mark.parametrize(
    "samples, group, error",
    [
        ("one string", {"size": 2}, TypeError),
        ([], {"size": 2}, ValueError),
        ([3], {"size": 2}, TypeError),
        ([{"rollout": "a", "idx": 1}], {"size": 2}, TypeError),
        ([{"rollout": "a", "index": -1}], {"size": 2}, TypeError),
        (["a"], {"size": 0}, ValueError),
        (["a"], {"id": "g"}, ValueError),
        (["a"], {"size": 2, "uid": "g"}, TypeError),
        (["a"], 2, TypeError),
    ],
)
def test_bad_arguments_are_refused_before_sending(samples, group, error):
    with pytest.raises(error):
        ClientCore().rewards_samples("p", samples, group)


def test_parsing_and_shape_errors():
    raw = samples_body([1.0, None, 0.0], [2, 1])
    result = SamplesResult.from_json(raw)
    assert result.rewards == [0.0, None] and result.indices == [2, 1]
    assert [d.index for d in result.details] == [2, 1]
    assert result.group == GroupStatus(key="id:abc", size=3, scored=3, partial=False)
    assert result.result.rewards == [1.0, None, 0.0]
    assert result.complete is False and result.raw == raw
    bad = dict(raw, indices=[2])
    with pytest.raises(TypeError):
        SamplesResult.from_json(bad)


# --- over MockTransport ----------------------------------------------------------------


def test_sync_client_sends_and_parses(decode):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=samples_body([1.0, 0.0], [1], key="id:u"))

    with CatRewardClient(transport=httpx.MockTransport(handler)) as client:
        result = client.rewards_samples("What is 6 x 7?", ["41"], SampleGroup(size=2, id="u"))
    assert result.rewards == [0.0] and result.indices == [1] and result.group.key == "id:u"
    (request,) = seen
    assert str(request.url).endswith("/rewards/samples")
    assert decode(request)["samples"] == [{"rollout": "41"}]
    assert request.headers["idempotency-key"].startswith("s-")


def test_sync_client_retries_503_with_the_same_key_and_raises_409(sleeps, error):
    answers = [
        error(503, "llm_unavailable", "judge down", retry_after=1.0),
        httpx.Response(200, json=samples_body([1.0, 1.0], [0])),
        error(409, "group_incomplete", "group incomplete: 1 of 4 samples arrived before the deadline"),
    ]
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return answers.pop(0)

    with CatRewardClient(transport=httpx.MockTransport(handler)) as client:
        assert client.rewards_samples("p", ["a"], {"size": 2}).rewards == [1.0]
        with pytest.raises(InvalidRequestError) as info:
            client.rewards_samples("p", ["a"], {"size": 4, "deadline_s": 1})
    assert seen[0].headers["idempotency-key"] == seen[1].headers["idempotency-key"]
    assert len(sleeps) == 1
    assert (info.value.status, info.value.type) == (409, "group_incomplete")
    assert len(seen) == 3  # a 409 is not retried


def test_sync_client_reports_a_malformed_answer():
    handler = lambda request: httpx.Response(200, json={"rewards": [1.0]})  # noqa: E731
    with CatRewardClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ResponseDecodeError):
            client.rewards_samples("p", ["a"], {"size": 1})


@pytest.mark.anyio
async def test_async_client_sends_parses_and_retries(sleeps, error, decode):
    answers = [httpx.ConnectError("refused"), httpx.Response(200, json=samples_body([0.5, 1.0, 0.0], [0, 2]))]
    seen: list[httpx.Request] = []

    async def handler(request):
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with AsyncCatRewardClient(transport=httpx.MockTransport(handler)) as client:
        result = await client.rewards_samples(
            "p", [{"rollout": "a", "index": 0}, {"rollout": "c", "index": 2}], SampleGroup(size=3, step=4)
        )
    assert result.rewards == [0.5, 0.0] and result.indices == [0, 2]
    assert len(seen) == 2 and len(sleeps) == 1
    assert seen[0].headers["idempotency-key"] == seen[1].headers["idempotency-key"] == hashlib.sha256(
        seen[0].content
    ).hexdigest()
    assert decode(seen[1])["group"] == {"size": 3, "step": 4}


@pytest.mark.anyio
async def test_async_client_raises_unavailable_after_retries(sleeps, error):
    async def handler(request):
        return error(503, "llm_unavailable", "down", retry_after=0.5)

    async with AsyncCatRewardClient(transport=httpx.MockTransport(handler), max_retries=1) as client:
        with pytest.raises(UnavailableError) as info:
            await client.rewards_samples("p", ["a"], {"size": 2})
    assert info.value.attempts == 2


# --- against the real app, in-process ----------------------------------------------------

needs_service = pytest.mark.skipif(
    importlib.util.find_spec("cat_reward") is None, reason="the cat-reward service is not installed here"
)


def _app():
    from cat_reward.api import create_app
    from cat_reward.backends.scripted import ScriptedLLM
    from cat_reward.engine.ports import Roles
    from cat_reward.settings import Settings

    from .test_client_asgi import anchor_script, judge_script

    anchor = ScriptedLLM(anchor_script, role="anchor")
    judge = ScriptedLLM(judge_script, role="judge")
    return create_app(Settings(), roles=Roles(anchor=anchor, judge=judge), with_history=False), anchor


@needs_service
@pytest.mark.anyio
async def test_one_sample_per_call_against_the_app():
    app, anchor = _app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncCatRewardClient("http://cat-reward.test", transport=transport) as client:
            group = SampleGroup(size=4, id=uuid.uuid4().hex, deadline_s=30)
            # Two identical rollouts without an index: distinct samples of the group.
            rollouts = ["It is 42.", "It is 41.", "It is 42.", "no idea"]
            results = await asyncio.gather(*[client.rewards_samples("What is 6 x 7?", [r], group) for r in rollouts])
    assert sorted(r.indices[0] for r in results) == [0, 1, 2, 3]
    assert [r.rewards for r in results] == [[1.0], [0.0], [1.0], [0.0]]
    assert all(r.group.scored == 4 and not r.group.partial for r in results)
    assert all(r.result.rewards == results[0].result.rewards for r in results)
    assert sum(1 for c in anchor.calls if c.stage == "synthesis") == 1


@needs_service
@pytest.mark.anyio
async def test_a_repeated_call_with_its_key_gets_the_same_place():
    app, anchor = _app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncCatRewardClient("http://cat-reward.test", transport=transport) as client:
            group = {"size": 2, "id": uuid.uuid4().hex}
            first = await asyncio.gather(
                client.rewards_samples("What is 6 x 7?", ["42"], group, idempotency_key="k-a"),
                client.rewards_samples("What is 6 x 7?", ["41"], group, idempotency_key="k-b"),
            )
            calls = len(anchor.calls)
            again = await client.rewards_samples("What is 6 x 7?", ["41"], group, idempotency_key="k-b")
    assert again.indices == first[1].indices and again.rewards == first[1].rewards == [0.0]
    assert len(anchor.calls) == calls
