"""The OpenAI-compatible client against httpx.MockTransport: wire format, capabilities, retries."""

import json

import httpx
import pytest

from cat_reward.backends.openai_compat import OpenAICompatClient
from cat_reward.engine import ChatRequest, LLMBadResponse, LLMRequestRejected, LLMUnavailable

pytestmark = pytest.mark.anyio


def completion(text="yes", logprobs=None):
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"model": "m", "choices": [choice], "usage": {"prompt_tokens": 11, "completion_tokens": 1}}


class Recorder:
    def __init__(self, handler):
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def bodies(self, path="/v1/chat/completions"):
        return [json.loads(r.content) for r in self.requests if r.url.path == path]


def client_for(handler, urls=("http://a/v1",), kind="auto", **kwargs):
    recorder = Recorder(handler)
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    llm = OpenAICompatClient(
        role="judge", model="m", base_urls=list(urls), http=http, kind=kind, backoff_base_s=0.001, **kwargs
    )
    return llm, recorder


REQUEST = ChatRequest(
    messages=[{"role": "user", "content": "hi"}],
    stage="verdict",
    max_tokens=3,
    choices=("yes", "no"),
    top_logprobs=5,
    json_schema={"type": "object"},
)


async def test_detects_vllm_and_forces_choice_and_schema():
    def handler(request):
        if request.url.path == "/version":
            return httpx.Response(200, json={"version": "0.32.0"})
        top = [{"token": "yes", "logprob": -0.1}, {"token": "no", "logprob": -2.5}]
        return httpx.Response(200, json=completion("yes", [{"token": "yes", "logprob": -0.1, "top_logprobs": top}]))

    llm, rec = client_for(handler)
    result = await llm.chat(REQUEST)
    body = rec.bodies()[0]
    assert body["structured_outputs"] == {"choice": ["yes", "no"]}
    assert body["response_format"]["type"] == "json_schema"
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert result.forced and result.text == "yes"
    assert result.top_logprobs == [{"yes": -0.1, "no": -2.5}]
    assert (result.prompt_tokens, result.completion_tokens) == (11, 1)
    assert (await llm.capabilities()).kind == "vllm"


async def test_generic_backend_gets_no_forcing():
    def handler(request):
        if request.url.path == "/version":
            return httpx.Response(404)
        return httpx.Response(200, json=completion("Yes"))

    llm, rec = client_for(handler)
    result = await llm.chat(REQUEST)
    body = rec.bodies()[0]
    assert "structured_outputs" not in body and "response_format" not in body
    assert not result.forced and result.top_logprobs is None


async def test_configured_kind_skips_detection():
    llm, rec = client_for(lambda r: httpx.Response(200, json=completion()), kind="openai")
    await llm.chat(REQUEST)
    assert [r.url.path for r in rec.requests] == ["/v1/chat/completions"]
    body = rec.bodies()[0]
    assert "response_format" in body and "structured_outputs" not in body


async def test_retries_5xx_then_succeeds():
    statuses = iter([503, 502, 200])

    def handler(request):
        status = next(statuses)
        return httpx.Response(status, json=completion() if status == 200 else {"error": {"message": "busy"}})

    llm, rec = client_for(handler, kind="vllm", max_retries=2)
    assert (await llm.chat(REQUEST)).text == "yes"
    assert len(rec.requests) == 3


async def test_gives_up_with_unavailable_and_retry_after():
    llm, rec = client_for(
        lambda r: httpx.Response(429, headers={"Retry-After": "0.01"}, json={"error": {"message": "slow down"}}),
        kind="vllm",
        max_retries=1,
    )
    with pytest.raises(LLMUnavailable) as info:
        await llm.chat(REQUEST)
    assert info.value.retry_after == pytest.approx(0.01)
    assert "slow down" in info.value.message
    assert len(rec.requests) == 2


async def test_connection_errors_move_to_the_next_endpoint():
    def handler(request):
        if request.url.host == "a":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=completion())

    llm, rec = client_for(handler, urls=("http://a/v1", "http://b/v1"), kind="vllm", max_retries=1)
    assert (await llm.chat(REQUEST)).text == "yes"
    assert [r.url.host for r in rec.requests] == ["a", "b"]


async def test_all_endpoints_down():
    def handler(request):
        raise httpx.ConnectError("refused", request=request)

    llm, _ = client_for(handler, kind="vllm", max_retries=2)
    with pytest.raises(LLMUnavailable, match="3 attempt"):
        await llm.chat(REQUEST)


async def test_context_overflow_is_rejected_with_backends_message_and_not_retried():
    message = "This model's maximum context length is 2048 tokens. However, you requested 3000 tokens."
    llm, rec = client_for(lambda r: httpx.Response(400, json={"error": {"message": message}}), kind="vllm")
    with pytest.raises(LLMRequestRejected, match="maximum context length"):
        await llm.chat(REQUEST)
    assert len(rec.requests) == 1


async def test_misconfigured_model_is_bad_response():
    llm, _ = client_for(lambda r: httpx.Response(404, json={"error": {"message": "model m does not exist"}}), kind="vllm")
    with pytest.raises(LLMBadResponse, match="does not exist"):
        await llm.chat(REQUEST)


async def test_malformed_completion_is_bad_response():
    llm, _ = client_for(lambda r: httpx.Response(200, json={"choices": []}), kind="vllm")
    with pytest.raises(LLMBadResponse):
        await llm.chat(REQUEST)


async def test_probe_reports_served_models():
    def handler(request):
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "other"}]})
        return httpx.Response(404)

    llm, _ = client_for(handler)
    probe = await llm.probe()
    assert probe["ok"] is False and "not served" in probe["endpoints"][0]["error"]


async def test_circuit_opens_after_repeated_failures_and_recovers():
    calls = {"n": 0}
    state = {"down": True}

    def handler(request):
        calls["n"] += 1
        if state["down"]:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=completion())

    llm, rec = client_for(handler, kind="vllm", max_retries=1, breaker_failures=3, breaker_cooldown_s=0.3)
    with pytest.raises(LLMUnavailable):
        await llm.chat(REQUEST)  # 2 failures
    with pytest.raises(LLMUnavailable) as info:
        await llm.chat(REQUEST)  # the 3rd failure opens the circuit; the retry fails at once
    assert calls["n"] == 3
    assert "circuit open" in info.value.message and info.value.retry_after >= 1
    with pytest.raises(LLMUnavailable, match="circuit open"):
        await llm.chat(REQUEST)  # open: no request goes out
    assert calls["n"] == 3
    state["down"] = False
    import asyncio

    await asyncio.sleep(0.35)  # cool-down over: a trial call goes through and closes the circuit
    assert (await llm.chat(REQUEST)).text == "yes"
    assert calls["n"] == 4


async def test_an_open_endpoint_is_skipped_for_a_healthy_one():
    def handler(request):
        if request.url.host == "a":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=completion())

    llm, rec = client_for(handler, urls=("http://a/v1", "http://b/v1"), kind="vllm", max_retries=1,
                          breaker_failures=1, breaker_cooldown_s=60)
    for _ in range(4):
        assert (await llm.chat(REQUEST)).text == "yes"
    assert [r.url.host for r in rec.requests].count("a") == 1  # tried once, then left alone
