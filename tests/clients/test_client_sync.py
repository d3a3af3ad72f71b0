"""CatRewardClient over httpx.MockTransport: retries, idempotency keys, errors, parsing."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from cat_reward_client import (
    DEFAULT_TIMEOUT,
    CatRewardClient,
    InvalidRequestError,
    NotFoundError,
    RequestTimeout,
    ResponseDecodeError,
    RewardGroup,
    TransportError,
    UnavailableError,
    UpstreamError,
)


class Script:
    """A MockTransport handler that answers from a list, one item per request, and records requests."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, **kwargs) -> CatRewardClient:
        return CatRewardClient(transport=httpx.MockTransport(self), **kwargs)


def test_defaults():
    with CatRewardClient() as client:
        assert client.base_url == "http://127.0.0.1:8000"
        assert client._http.timeout.read == 600.0 and client._http.timeout.connect == 10.0
        assert client.retry.max_retries == 3
        assert DEFAULT_TIMEOUT.read == 600.0


def test_rewards_parses_the_answer_and_sends_headers(reward_body, decode):
    script = Script(httpx.Response(200, json=reward_body([1.0, 0.0, None])))
    with script.client(api_key="sk-test", base_url="http://svc.test/cat") as client:
        result = client.rewards("What is 6 x 7?", ["42", "41", "?"], mode="rubric", options={"seed": 3})
    assert result.rewards == [1.0, 0.0, None]
    assert result.raw["rubric_id"] == result.rubric_id
    (request,) = script.requests
    assert request.method == "POST" and str(request.url) == "http://svc.test/cat/rewards"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("cat-reward-client/")
    assert request.headers["idempotency-key"] == hashlib.sha256(request.content).hexdigest()
    assert decode(request) == {"prompt": "What is 6 x 7?", "rollouts": ["42", "41", "?"], "mode": "rubric",
                               "options": {"seed": 3}}


def test_no_authorization_header_without_api_key(reward_body):
    script = Script(httpx.Response(200, json=reward_body()))
    with script.client() as client:
        client.rewards("p", ["a"])
    assert "authorization" not in script.requests[0].headers


def test_503_with_retry_after_then_200(reward_body, error, sleeps):
    script = Script(
        error(503, "llm_unavailable", "judge unreachable", retry_after=2.0, headers={"Retry-After": "2"}),
        httpx.Response(200, json=reward_body([1.0])),
    )
    with script.client() as client:
        result = client.rewards("p", ["a"])
    assert result.rewards == [1.0]
    assert len(script.requests) == 2
    assert len(sleeps) == 1 and 2.0 <= sleeps[0] <= 2.2
    keys = {r.headers["idempotency-key"] for r in script.requests}
    assert len(keys) == 1, "every retry of one call carries the same idempotency key"
    assert script.requests[0].content == script.requests[1].content


def test_retry_after_is_capped(reward_body, error, sleeps):
    script = Script(error(503, "llm_unavailable", "busy", headers={"Retry-After": "3600"}),
                    httpx.Response(200, json=reward_body()))
    with script.client() as client:
        client.rewards("p", ["a"])
    assert sleeps == [60.0]


def test_429_is_retried_with_backoff_when_no_retry_after(reward_body, sleeps):
    script = Script(httpx.Response(429, text="slow down"), httpx.Response(429, text="slow down"),
                    httpx.Response(200, json=reward_body()))
    with script.client() as client:
        client.rewards("p", ["a"])
    assert len(script.requests) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_connection_error_then_success(reward_body, sleeps):
    script = Script(httpx.ConnectError("connection refused"), httpx.Response(200, json=reward_body([0.5])))
    with script.client() as client:
        result = client.rewards("p", ["a"], idempotency_key="group-17")
    assert result.rewards == [0.5]
    assert [r.headers["idempotency-key"] for r in script.requests] == ["group-17", "group-17"]
    assert len(sleeps) == 1


def test_dropped_connection_is_retried(reward_body, sleeps):
    script = Script(httpx.RemoteProtocolError("server disconnected"), httpx.Response(200, json=reward_body()))
    with script.client() as client:
        assert client.rewards("p", ["a"]).rewards == [1.0, 0.0, None]
    assert len(script.requests) == 2


def test_422_is_not_retried_and_names_the_param(error, sleeps):
    script = Script(error(422, "invalid_request", "rollouts: List should have at least 1 item", param="rollouts"))
    with script.client(max_retries=5) as client:
        with pytest.raises(InvalidRequestError) as info:
            client.rewards("p", [])
    exc = info.value
    assert (exc.status, exc.type, exc.param, exc.attempts) == (422, "invalid_request", "rollouts", 1)
    assert "rollouts" in str(exc)
    assert len(script.requests) == 1 and sleeps == []


def test_gives_up_after_max_retries(error, sleeps):
    script = Script(*[error(503, "llm_unavailable", "down", retry_after=1.0, headers={"Retry-After": "1"})] * 3)
    with script.client(max_retries=2) as client:
        with pytest.raises(UnavailableError) as info:
            client.rewards("p", ["a"])
    assert info.value.retry_after == 1.0 and info.value.attempts == 3 and info.value.status == 503
    assert len(script.requests) == 3 and len(sleeps) == 2


def test_max_retries_zero_means_one_attempt(sleeps):
    script = Script(httpx.ConnectError("refused"))
    with script.client(max_retries=0) as client:
        with pytest.raises(TransportError) as info:
            client.healthz()
    assert info.value.status is None and isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(script.requests) == 1 and sleeps == []


def test_502_is_not_retried(error, sleeps):
    script = Script(error(502, "rubric_generation_failed", "the anchor proposed 2 criteria"))
    with script.client() as client:
        with pytest.raises(UpstreamError) as info:
            client.rewards("p", ["a"])
    assert info.value.type == "rubric_generation_failed"
    assert len(script.requests) == 1


def test_read_timeout_is_not_retried_by_default(sleeps):
    script = Script(httpx.ReadTimeout("timed out"))
    with script.client() as client:
        with pytest.raises(RequestTimeout):
            client.rewards("p", ["a"])
    assert len(script.requests) == 1


def test_batch(reward_body, decode):
    script = Script(httpx.Response(200, json={"results": [
        {"index": 0, "ok": True, "result": reward_body([1.0, 0.0])},
        {"index": 1, "ok": False, "error": {"type": "invalid_request", "message": "empty reference",
                                            "param": "reference"}},
    ]}))
    with script.client() as client:
        batch = client.rewards_batch([RewardGroup("p0", ["a", "b"]), {"prompt": "p1", "rollouts": ["c"]}])
    assert batch.rewards == [[1.0, 0.0], None]
    with pytest.raises(InvalidRequestError) as info:
        batch[1].unwrap()
    assert info.value.param == "reference"
    request = script.requests[0]
    assert request.url.path == "/rewards/batch"
    assert [g["prompt"] for g in decode(request)["groups"]] == ["p0", "p1"]
    assert request.headers["idempotency-key"] == hashlib.sha256(request.content).hexdigest()


def test_same_body_same_key_across_calls(reward_body):
    script = Script(httpx.Response(200, json=reward_body()), httpx.Response(200, json=reward_body()),
                    httpx.Response(200, json=reward_body()))
    with script.client() as client:
        client.rewards("p", ["a", "b"])
        client.rewards("p", ["a", "b"])
        client.rewards("p", ["b", "a"])
    keys = [r.headers["idempotency-key"] for r in script.requests]
    assert keys[0] == keys[1] != keys[2]


def test_health_and_readiness():
    script = Script(
        httpx.Response(200, json={"status": "ok", "version": "0.1.0"}),
        httpx.Response(503, json={"ready": False, "roles": [{"role": "judge", "model": "m", "ok": False}]}),
    )
    with script.client() as client:
        health = client.healthz()
        ready = client.readyz()
    assert (health.status, health.version) == ("ok", "0.1.0")
    assert ready.ready is False and ready.roles[0]["ok"] is False
    assert len(script.requests) == 2, "a not-ready 503 is an answer, not retried"


def test_rubrics(error):
    record = {"rubric_id": "rb_1", "criteria": [{"id": "c1", "text": "x"}]}
    script = Script(
        httpx.Response(200, json=record),
        error(404, "not_found", "Not Found"),
        httpx.Response(200, json={"items": [{"rubric_id": "rb_1"}], "next_cursor": "n1"}),
        httpx.Response(200, json={"items": [{"rubric_id": "rb_2"}], "next_cursor": None}),
    )
    with script.client() as client:
        assert client.get_rubric("rb_1") == record
        with pytest.raises(NotFoundError):
            client.get_rubric("rb_missing")
        ids = [r["rubric_id"] for r in client.iter_rubrics(run_id="run-1", limit=1)]
    assert ids == ["rb_1", "rb_2"]
    urls = [str(r.url) for r in script.requests]
    assert urls[0].endswith("/rubrics/rb_1") and urls[1].endswith("/rubrics/rb_missing")
    assert script.requests[2].url.params == httpx.QueryParams({"run_id": "run-1", "limit": "1"})
    assert script.requests[3].url.params == httpx.QueryParams({"run_id": "run-1", "limit": "1", "cursor": "n1"})


def test_list_rubrics_page():
    script = Script(httpx.Response(200, json={"items": [], "next_cursor": None}))
    with script.client() as client:
        page = client.list_rubrics(prompt_hash="ph", cursor=None)
    assert page.items == [] and page.next_cursor is None and page.raw == {"items": [], "next_cursor": None}
    assert script.requests[0].url.params == httpx.QueryParams({"prompt_hash": "ph"})


def test_repeating_cursor_is_an_error():
    page = {"items": [{"rubric_id": "rb_1"}], "next_cursor": "same"}
    script = Script(httpx.Response(200, json=page), httpx.Response(200, json=page))
    with script.client() as client:
        with pytest.raises(ResponseDecodeError, match="repeats"):
            list(client.iter_rubrics())
