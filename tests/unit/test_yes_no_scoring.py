"""Batched single-token yes/no scoring in the OpenAI-compatible client, against a fake vLLM over
httpx.MockTransport: capability probing, chat-template reproduction, the /v1/completions wire
format, batching, coalescing across callers, and isolation of rejected prompts."""

import asyncio
import logging
import math

import httpx
import pytest

from cat_reward.backends.openai_compat import OpenAICompatClient
from cat_reward.engine import LLMRequestRejected, LLMUnavailable
from cat_reward.engine.ports import ScoringUnavailable

from .fake_vllm import WORD_ID, FakeVLLM, chatml, user_content

pytestmark = pytest.mark.anyio

CONVERSATION = [
    {"role": "system", "content": "You are a strict grader."},
    {"role": "user", "content": "Response:\n<response>\n42\n</response>\n\nCriterion: It says 42.\nAnswer yes or no."},
]


def client(fake: FakeVLLM, kind="auto", **kwargs) -> OpenAICompatClient:
    http = httpx.AsyncClient(transport=fake.transport())
    return OpenAICompatClient(
        role="judge", model="m", base_urls=["http://judge/v1"], http=http, kind=kind, backoff_base_s=0.001, **kwargs
    )


def convo(i: int) -> list[dict]:
    return [CONVERSATION[0], {"role": "user", "content": f"Response {i}: ... Criterion {i}"}]


async def test_vllm_is_detected_and_probed_once():
    fake = FakeVLLM()
    llm = client(fake)
    assert await llm.yes_no_scoring() is True
    assert await llm.yes_no_scoring() is True
    assert [b["prompt"] for b in fake.bodies("/tokenize")] == ["yes", "no"]
    probe = fake.bodies("/v1/completions")
    assert len(probe) == 1  # the wire-format probe, once
    # Only the chat path's answer words may be generated.
    assert probe[0]["allowed_token_ids"] == [WORD_ID["yes"], WORD_ID["no"]]


async def test_rendered_prompt_is_the_servers_chat_template():
    fake = FakeVLLM()
    llm = client(fake)
    [prompt] = await llm.render_prompts([CONVERSATION])
    assert prompt == chatml(CONVERSATION)
    calls = len(fake.requests)
    again = await llm.render_prompts([convo(1), convo(2)])
    assert again == [chatml(convo(1)), chatml(convo(2))]
    assert len(fake.requests) == calls  # the template is probed once per roles sequence, then local


async def test_trimming_template_is_reproduced():
    fake = FakeVLLM(render=lambda messages: chatml(messages, trim=True))
    llm = client(fake)
    messages = [CONVERSATION[0], {"role": "user", "content": "  padded content \n"}]
    [prompt] = await llm.render_prompts([messages])
    assert prompt == chatml(messages, trim=True)


async def test_template_that_rewrites_content_is_refused(caplog):
    def escaping(messages):
        return chatml([{**m, "content": m["content"].replace("&", "&amp;")} for m in messages])

    llm = client(FakeVLLM(render=escaping))
    with caplog.at_level(logging.WARNING), pytest.raises(ScoringUnavailable):
        await llm.render_prompts([CONVERSATION])
    assert "cannot reproduce the chat template" in caplog.text


async def test_wire_format_and_results_in_prompt_order():
    def decide(prompt):
        return ("Yes", 0.9) if "even" in user_content(prompt) else ("No", 0.7)

    fake = FakeVLLM(decide)
    llm = client(fake)
    prompts = await llm.render_prompts([[CONVERSATION[0], {"role": "user", "content": w}] for w in ("even", "odd", "even")])
    scores = await llm.score_yes_no(prompts, stage="verdict", temperature=0.0, seed=7)
    body = fake.bodies("/v1/completions")[-1]
    assert body["prompt"] == prompts  # ONE request carrying every prompt
    assert body["max_tokens"] == 1 and body["temperature"] == 0.0
    # The answers' logprobs, asked by token id (exact whatever their rank).
    assert body["allowed_token_ids"] == body["logprob_token_ids"] == [WORD_ID["yes"], WORD_ID["no"]]
    assert body["logprobs"] == 0
    assert body["add_special_tokens"] is False
    assert "seed" not in body  # greedy: the seed changes nothing, so groups with other seeds share batches
    assert [s.text for s in scores] == ["yes", "no", "yes"]
    assert math.isclose(math.exp(scores[0].top_logprobs["yes"]), 0.9)
    assert math.isclose(math.exp(scores[1].top_logprobs["yes"]), 0.3)
    assert len({s.batch_id for s in scores}) == 1
    assert sum(s.prompt_tokens for s in scores) == sum(len(p) for p in prompts)  # apportioned, exact in sum
    assert all(s.completion_tokens == 1 for s in scores)


async def test_older_vllm_without_logprob_token_ids_gets_top_k():
    fake = FakeVLLM(logprob_token_ids=False)
    llm = client(fake)
    assert await llm.yes_no_scoring()
    scores = await llm.score_yes_no(["p"])
    body = fake.bodies("/v1/completions")[-1]
    assert body["logprobs"] == 20 and "logprob_token_ids" not in body
    # Only the answer words are kept, as the chat path's P(yes) only sees them.
    assert set(scores[0].top_logprobs) == {"yes", "no"}


async def test_answer_words_must_be_single_tokens(caplog, monkeypatch):
    from . import fake_vllm

    original = fake_vllm.tokenize
    monkeypatch.setattr(fake_vllm, "tokenize", lambda text: [121, 1234] if text == "yes" else original(text))
    fake = FakeVLLM()
    with caplog.at_level(logging.WARNING):
        assert await client(fake).yes_no_scoring() is False
    assert "'yes' is 2 tokens" in caplog.text
    assert fake.bodies("/v1/completions") == []


async def test_sampling_seed_is_sent_when_it_matters():
    fake = FakeVLLM()
    llm = client(fake)
    await llm.score_yes_no(["p"], temperature=0.7, seed=3)
    assert fake.bodies("/v1/completions")[-1]["seed"] == 3


async def test_large_requests_are_split_into_batches():
    fake = FakeVLLM()
    llm = client(fake, score_batch_size=64, score_batch_wait_s=0.001)
    assert await llm.yes_no_scoring()
    prompts = [f"prompt {i}" for i in range(150)]
    scores = await llm.score_yes_no(prompts)
    sizes = [len(b["prompt"]) for b in fake.bodies("/v1/completions")[1:]]  # after the probe
    assert sizes == [64, 64, 22]
    assert len(scores) == 150 and len({s.batch_id for s in scores}) == 3


async def test_concurrent_callers_share_one_batch():
    fake = FakeVLLM()
    llm = client(fake, score_batch_size=64, score_batch_wait_s=0.05)
    assert await llm.yes_no_scoring()

    async def group(g):
        return await llm.score_yes_no([f"group {g} verdict {i}" for i in range(10)])

    results = await asyncio.gather(*(group(g) for g in range(4)))
    batches = fake.bodies("/v1/completions")[1:]
    assert len(batches) == 1 and len(batches[0]["prompt"]) == 40
    assert {s.batch_id for r in results for s in r} == {results[0][0].batch_id}
    assert all(len(r) == 10 for r in results)


async def test_callers_with_other_sampling_do_not_share_a_batch():
    fake = FakeVLLM()
    llm = client(fake, score_batch_wait_s=0.02)
    assert await llm.yes_no_scoring()
    await asyncio.gather(llm.score_yes_no(["a"], temperature=0.0), llm.score_yes_no(["b"], temperature=0.7, seed=1))
    temperatures = sorted(b["temperature"] for b in fake.bodies("/v1/completions")[1:])
    assert temperatures == [0.0, 0.7]


async def test_inflight_batches_are_bounded():
    fake = FakeVLLM(delay_s=0.02)
    llm = client(fake, score_batch_size=2, score_batch_wait_s=0, score_max_inflight=2)
    assert await llm.yes_no_scoring()
    await llm.score_yes_no([f"p{i}" for i in range(12)])
    assert len(fake.bodies("/v1/completions")) == 1 + 6
    assert fake.max_inflight_seen == 2


async def test_a_rejected_prompt_fails_only_its_caller():
    fake = FakeVLLM(max_prompt_chars=100)
    llm = client(fake, score_batch_wait_s=0.02)
    assert await llm.yes_no_scoring()
    ok, bad = await asyncio.gather(
        llm.score_yes_no([f"fine {i}" for i in range(7)]),
        llm.score_yes_no(["fine too", "x" * 500]),
        return_exceptions=True,
    )
    assert isinstance(bad, LLMRequestRejected) and "context length" in str(bad)
    assert [s.text for s in ok] == ["yes"] * 7
    # The shared batch was rejected, then split until the long prompt was alone.
    assert any("x" * 500 in b["prompt"] and len(b["prompt"]) == 1 for b in fake.bodies("/v1/completions"))


async def test_generic_backend_has_no_scoring():
    fake = FakeVLLM(version=False)
    llm = client(fake)
    assert await llm.yes_no_scoring() is False
    with pytest.raises(ScoringUnavailable):
        await llm.score_yes_no(["p"])
    assert fake.bodies("/v1/completions") == [] and fake.bodies("/tokenize") == []


async def test_configured_kinds_are_not_second_guessed():
    openai = FakeVLLM()
    assert await client(openai, kind="openai").yes_no_scoring() is False
    assert openai.requests == []  # no detection, no probe
    vllm = FakeVLLM(version=False)  # configured as vLLM: /version is not asked
    assert await client(vllm, kind="vllm").yes_no_scoring() is True
    assert all(path != "/version" for path, _ in vllm.requests)


async def test_switched_off_scoring_makes_no_probe():
    fake = FakeVLLM()
    assert await client(fake, yes_no_scoring=False).yes_no_scoring() is False
    assert fake.requests == []


@pytest.mark.parametrize("fake", [FakeVLLM(tokenize_ok=False), FakeVLLM(logprobs=False)], ids=["no-tokenize", "no-logprobs"])
async def test_failed_probe_disables_scoring(fake, caplog):
    with caplog.at_level(logging.WARNING):
        assert await client(fake, kind="vllm").yes_no_scoring() is False
    assert "scoring unavailable" in caplog.text


async def test_unreachable_backend_is_probed_again_later():
    state = {"up": False}
    fake = FakeVLLM()

    async def handler(request):
        if not state["up"]:
            raise httpx.ConnectError("refused", request=request)
        return await fake.handle(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    llm = OpenAICompatClient(role="judge", model="m", base_urls=["http://j/v1"], http=http, kind="vllm", backoff_base_s=0.001)
    assert await llm.yes_no_scoring() is False
    state["up"] = True
    assert await llm.yes_no_scoring() is True


async def test_backend_failure_reaches_every_caller_of_the_batch():
    fake = FakeVLLM()
    state = {"down": False}

    async def handler(request):
        if state["down"] and request.url.path == "/v1/completions":
            return httpx.Response(503, json={"error": {"message": "overloaded"}})
        return await fake.handle(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    llm = OpenAICompatClient(
        role="judge", model="m", base_urls=["http://j/v1"], http=http, max_retries=1, backoff_base_s=0.001,
        score_batch_wait_s=0.02,
    )
    assert await llm.yes_no_scoring()
    state["down"] = True
    results = await asyncio.gather(llm.score_yes_no(["a"]), llm.score_yes_no(["b"]), return_exceptions=True)
    assert all(isinstance(r, LLMUnavailable) and "overloaded" in str(r) for r in results)
    assert len(fake.bodies("/v1/completions")) == 1  # only the probe got through; one shared batch failed


async def test_llama_cpp_style_logprobs_are_read_too():
    from cat_reward.backends.openai_compat import _first_position

    chat_style = {"content": [{"token": "No", "logprob": -0.2, "top_logprobs": [{"token": "Yes", "logprob": -1.8}]}]}
    assert _first_position(chat_style, "No") == {"No": -0.2, "Yes": -1.8}
    legacy = {"tokens": ["Yes"], "token_logprobs": [-0.1], "top_logprobs": [{"No": -2.4}]}
    assert _first_position(legacy, "Yes") == {"No": -2.4, "Yes": -0.1}
    assert _first_position(None, "Yes") == {}


async def test_each_scoring_request_is_observed_once():
    seen = []
    fake = FakeVLLM(max_prompt_chars=100)
    llm = client(fake, score_batch_size=3, score_batch_wait_s=0, observe_batch=lambda *args: seen.append(args))
    assert await llm.yes_no_scoring()
    assert seen == []  # the one-time probe is not a verdict call
    await llm.score_yes_no(["a", "b", "c", "d"], stage="equivalence")
    assert [(role, stage, outcome) for role, stage, outcome, *_ in seen] == [("judge", "equivalence", "ok")] * 2
    assert sum(args[4] for args in seen) == 4  # prompt tokens from the responses' usage
    seen.clear()
    with pytest.raises(LLMRequestRejected):
        await llm.score_yes_no(["x" * 500])
    assert [outcome for _, _, outcome, *_ in seen] == ["error"]



async def test_wiring_builds_the_judge_from_settings_and_counts_batches():
    from prometheus_client import REGISTRY

    import cat_reward.api.app  # noqa: F401 - wiring is imported through the app, as the CLI does
    from cat_reward.settings import Settings
    from cat_reward.wiring import build_roles

    settings = Settings(
        anchor_base_url=["http://judge/v1"], verdict_batch_size=7, verdict_batch_wait_ms=2, verdict_batch_inflight=3
    )
    fake = FakeVLLM()
    roles = build_roles(settings, httpx.AsyncClient(transport=fake.transport()))
    assert await roles.anchor.yes_no_scoring() is False  # only the judge scores
    labels = {"role": "judge", "stage": "verdict", "outcome": "ok"}
    before = REGISTRY.get_sample_value("cat_llm_calls_total", labels) or 0.0
    await roles.judge.score_yes_no([f"p{i}" for i in range(10)])
    assert [len(b["prompt"]) for b in fake.bodies("/v1/completions")[1:]] == [7, 3]
    assert REGISTRY.get_sample_value("cat_llm_calls_total", labels) == before + 2
