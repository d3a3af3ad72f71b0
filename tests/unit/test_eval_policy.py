"""cat-reward eval's policy client against an httpx.MockTransport: n=G in one request, top-up
and fallback to single requests, sampling options, retries and explicit errors."""

from __future__ import annotations

import json

import httpx
import pytest

from cat_reward.evaluation.policy import Completion, PolicyClient, PolicyError

pytestmark = pytest.mark.anyio
URL = "http://policy.test/v1"
MESSAGES = [{"role": "user", "content": "What is 2 + 3?"}]


class FakePolicy:
    """Answers chat completions with choices 'r<seed>-<i>'; ``max_choices`` caps n; ``reject_n``
    answers 400 to n > 1; ``fail`` is a list of statuses to return first."""

    def __init__(self, max_choices: int | None = None, reject_n: bool = False, fail=(), models=("policy-model",)):
        self.max_choices, self.reject_n, self.fail, self.models = max_choices, reject_n, list(fail), models
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": m} for m in self.models]})
        assert request.url.path == "/v1/chat/completions"
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.fail:
            status = self.fail.pop(0)
            return httpx.Response(status, json={"error": {"message": f"boom {status}"}})
        n = body.get("n", 1)
        if self.reject_n and n > 1:
            return httpx.Response(400, json={"error": {"message": "n must be 1"}})
        count = min(n, self.max_choices or n)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": f"r{body.get('seed')}-{i}"}, "finish_reason": "stop"}
            for i in reversed(range(count))  # out of order on purpose: the client sorts by index
        ]
        return httpx.Response(200, json={"choices": choices, "model": body["model"]})


def client(fake: FakePolicy, **kwargs) -> PolicyClient:
    return PolicyClient(URL, transport=httpx.MockTransport(fake), backoff_s=0.0, **kwargs)


async def test_one_request_for_g_rollouts_with_the_sampling_options():
    fake = FakePolicy()
    async with client(fake, temperature=0.9, top_p=0.8, max_tokens=77, seed=5) as policy:
        got = await policy.sample(MESSAGES, 4)
    assert got == [Completion(text=f"r5-{i}", finish_reason="stop") for i in range(4)]
    (body,) = fake.bodies
    assert body == {"model": "policy-model", "messages": MESSAGES, "n": 4, "temperature": 0.9, "max_tokens": 77,
                    "top_p": 0.8, "seed": 5}
    assert policy.multi_choice is True and policy.requests == 1 and policy.topped_up == 0


async def test_model_defaults_to_the_first_listed_and_can_be_given():
    fake = FakePolicy(models=("first", "second"))
    async with client(fake) as policy:
        assert await policy.resolve_model() == "first"
    async with client(fake, model="mine") as policy:
        await policy.sample(MESSAGES, 1)
    assert fake.bodies[-1]["model"] == "mine" and "seed" not in fake.bodies[-1] and "top_p" not in fake.bodies[-1]


async def test_fewer_choices_are_topped_up_with_single_requests_and_other_seeds():
    fake = FakePolicy(max_choices=2)
    async with client(fake, seed=10) as policy:
        got = await policy.sample(MESSAGES, 3)
        assert [c.text for c in got] == ["r10-0", "r10-1", "r12-0"]
        assert [b["n"] for b in fake.bodies] == [3, 1]
        assert policy.topped_up == 1 and policy.requests == 2
        assert policy.multi_choice is None  # n is capped, not ignored: keep asking for n


async def test_a_server_that_ignores_n_gets_single_requests_from_then_on():
    fake = FakePolicy(max_choices=1)
    async with client(fake, seed=10) as policy:
        got = await policy.sample(MESSAGES, 3)
        assert [c.text for c in got] == ["r10-0", "r11-0", "r12-0"]
        assert policy.multi_choice is False
        await policy.sample(MESSAGES, 2)
    assert [b["n"] for b in fake.bodies] == [3, 1, 1, 1, 1]
    assert policy.topped_up == 4 and policy.requests == 5


async def test_a_server_that_rejects_n_gets_single_requests_from_then_on():
    fake = FakePolicy(reject_n=True)
    async with client(fake) as policy:
        first = await policy.sample(MESSAGES, 3)
        assert policy.multi_choice is False
        second = await policy.sample(MESSAGES, 2)
    assert len(first) == 3 and len(second) == 2
    assert [b["n"] for b in fake.bodies] == [3, 1, 1, 1, 1, 1]  # one rejected n=3, then singles only


async def test_transient_errors_are_retried():
    fake = FakePolicy(fail=[503, 500])
    async with client(fake, max_retries=2) as policy:
        got = await policy.sample(MESSAGES, 2)
    assert len(got) == 2 and len(fake.bodies) == 3


async def test_persistent_errors_are_explicit():
    fake = FakePolicy(fail=[503, 503, 503])
    async with client(fake, max_retries=2) as policy:
        with pytest.raises(PolicyError) as error:
            await policy.sample(MESSAGES, 2)
    assert error.value.status == 503
    assert error.value.message == f"policy {URL}/chat/completions: HTTP 503: boom 503"


async def test_a_rejection_that_singles_share_is_raised_not_hidden():
    fake = FakePolicy(fail=[400, 400])
    async with client(fake) as policy:
        with pytest.raises(PolicyError, match="HTTP 400: boom 400"):
            await policy.sample(MESSAGES, 2)
        assert policy.multi_choice is None  # not concluded from a failure singles share


async def test_unreachable_policy_is_explicit():
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    async with PolicyClient(URL, transport=httpx.MockTransport(refuse), backoff_s=0.0, max_retries=1) as policy:
        with pytest.raises(PolicyError, match=r"policy http://policy.test/v1/models: ConnectError: connection refused"):
            await policy.sample(MESSAGES, 1)


@pytest.mark.parametrize(
    "answer, message",
    [
        ({"choices": []}, "returned no choices"),
        ({"choices": [{"index": 0, "message": {"role": "assistant", "content": None}}]}, "choice 0 has no message content"),
        ({"data": []}, "returned no choices"),
    ],
)
async def test_malformed_answers_are_explicit(answer, message):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    async with PolicyClient(URL, model="m", transport=transport) as policy:
        with pytest.raises(PolicyError, match=message):
            await policy.sample(MESSAGES, 1)


async def test_no_listed_model_is_explicit():
    async with client(FakePolicy(models=())) as policy:
        with pytest.raises(PolicyError, match="lists no model; pass --policy-model"):
            await policy.resolve_model()
