"""AsyncCatRewardClient over httpx.MockTransport: the same behaviour as the sync client."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from cat_reward_client import AsyncCatRewardClient, InvalidRequestError, NotFoundError, UnavailableError

pytestmark = pytest.mark.anyio


class AsyncScript:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, **kwargs) -> AsyncCatRewardClient:
        return AsyncCatRewardClient(transport=httpx.MockTransport(self), **kwargs)


async def test_503_with_retry_after_then_200(reward_body, error, sleeps):
    script = AsyncScript(
        error(503, "llm_unavailable", "anchor unreachable", retry_after=4.2, headers={"Retry-After": "5"}),
        httpx.Response(200, json=reward_body([1.0, 1.0])),
    )
    async with script.client(api_key="k") as client:
        result = await client.rewards("p", ["a", "b"])
    assert result.rewards == [1.0, 1.0]
    assert len(sleeps) == 1 and 5.0 <= sleeps[0] <= 5.5
    first, second = script.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["idempotency-key"] == hashlib.sha256(first.content).hexdigest()
    assert first.headers["authorization"] == "Bearer k"


async def test_connection_error_then_success(reward_body, sleeps):
    script = AsyncScript(httpx.ConnectError("refused"), httpx.ConnectTimeout("slow connect"),
                         httpx.Response(200, json=reward_body([0.0])))
    async with script.client() as client:
        result = await client.rewards("p", ["a"])
    assert result.rewards == [0.0]
    assert len(script.requests) == 3 and len(sleeps) == 2


async def test_422_is_not_retried(error, sleeps):
    script = AsyncScript(error(422, "invalid_request", "groups.1.options.num_criteria: too big",
                               param="groups.1.options.num_criteria"))
    async with script.client(max_retries=4) as client:
        with pytest.raises(InvalidRequestError) as info:
            await client.rewards_batch([{"prompt": "p", "rollouts": ["a"]}, {"prompt": "q", "rollouts": ["b"],
                                        "options": {"num_criteria": 99}}])
    assert info.value.param == "groups.1.options.num_criteria" and info.value.status == 422
    assert len(script.requests) == 1 and sleeps == []


async def test_exhausted_retries_raise_unavailable(error, sleeps):
    script = AsyncScript(httpx.Response(503, text="upstream down"), httpx.Response(503, text="upstream down"))
    async with script.client(max_retries=1) as client:
        with pytest.raises(UnavailableError) as info:
            await client.healthz()
    assert info.value.attempts == 2 and "upstream down" in info.value.message


async def test_other_endpoints(error):
    script = AsyncScript(
        httpx.Response(200, json={"status": "ok", "version": "9"}),
        httpx.Response(200, json={"ready": True, "roles": []}),
        error(404, "not_found", "no such rubric"),
        httpx.Response(200, json={"items": [{"rubric_id": "a"}], "next_cursor": "c2"}),
        httpx.Response(200, json={"items": [{"rubric_id": "b"}], "next_cursor": None}),
    )
    async with script.client() as client:
        assert (await client.healthz()).version == "9"
        assert (await client.readyz()).ready is True
        with pytest.raises(NotFoundError) as info:
            await client.get_rubric("rb_x")
        ids = [item["rubric_id"] async for item in client.iter_rubrics(prompt_hash="h")]
    assert info.value.status == 404
    assert ids == ["a", "b"]
    assert script.requests[-1].url.params == httpx.QueryParams({"prompt_hash": "h", "cursor": "c2"})
