"""Every mode and the batch route against the real CPU vLLM judge, over real HTTP.

SmolLM2-135M is weak: these tests check structure and bookkeeping, never answer quality.
"""

from __future__ import annotations

import pytest

from cat_reward import local_judge

from .conftest import start_service

pytestmark = pytest.mark.e2e

PROMPT = "What is 12 + 30? Give the final answer in \\boxed{}."
ROLLOUTS = [
    "12 + 30 = 42. The answer is \\boxed{42}.",
    "Adding 12 and 30 gives 42, so \\boxed{42}.",
    "12 + 30 is 52. \\boxed{52}",
]
# Small generations keep the CPU run short; structured output keeps the rubric JSON valid.
FAST = {"synthesis": {"max_tokens": 160}, "rubric": {"max_tokens": 320}, "seed": 1}


def check_common(data: dict, g: int) -> None:
    assert len(data["rewards"]) == g
    for reward, detail in zip(data["rewards"], data["details"]):
        assert detail["reward"] == reward
        if reward is None:
            assert detail["error"], "a null reward must say why"
        else:
            assert 0.0 <= reward <= 1.0
    assert [d["index"] for d in data["details"]] == list(range(g))
    assert data["provenance"]["anchor_model"] == local_judge.SERVED_MODEL
    assert data["provenance"]["judge_model"] == local_judge.SERVED_MODEL
    assert data["provenance"]["prompt_version"].startswith("cat-v1+")
    usage = data["usage"]
    assert usage["latency_ms"]["total"] > 0


def test_readyz_sees_the_real_judge(http):
    response = http.get("/readyz")
    assert response.status_code == 200
    roles = response.json()["roles"]
    assert [r["role"] for r in roles] == ["anchor", "judge"]
    assert all(r["ok"] and r["kind"] == "vllm" for r in roles)


def test_rubric_mode(http):
    response = http.post("/rewards", json={"prompt": PROMPT, "rollouts": ROLLOUTS, "mode": "rubric", "options": FAST})
    assert response.status_code == 200, response.text
    data = response.json()
    check_common(data, 3)
    assert data["reference"].strip()
    n = len(data["rubric"])
    assert 5 <= n <= 8
    assert len({c["text"].lower() for c in data["rubric"]}) == n
    assert data["rubric_id"].startswith("rb_")
    for detail in data["details"]:
        assert [v["criterion_id"] for v in detail["verdicts"]] == [c["id"] for c in data["rubric"]]
        for verdict in detail["verdicts"]:
            assert verdict["met"] in (True, False) or verdict["error"]
            # vLLM returns logprobs, so every answered verdict carries P(yes).
            if verdict["met"] is not None:
                assert 0.0 <= verdict["p_yes"] <= 1.0
        if detail["reward"] is not None:
            met = sum(v["met"] for v in detail["verdicts"])
            assert detail["reward"] == pytest.approx(met / n)
    usage = data["usage"]
    assert usage["stages"]["synthesis"]["calls"] == 1
    assert usage["stages"]["rubric"]["calls"] >= 1
    assert usage["stages"]["verdict"]["calls"] >= 3 * n
    assert usage["llm_calls"] == sum(s["calls"] for s in usage["stages"].values())
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert data["reference_details"]["rubric"]["structured_output"] is True


def test_verifiable_mode_with_synthesis(http):
    response = http.post("/rewards", json={"prompt": PROMPT, "rollouts": ROLLOUTS, "mode": "verifiable", "options": FAST})
    assert response.status_code == 200, response.text
    data = response.json()
    check_common(data, 3)
    assert [d["extracted_answer"] for d in data["details"]] == ["42", "42", "52"]
    assert data["usage"]["llm_calls"] == 1
    if data["reference_answer"] is None:
        assert "reference_no_answer" in data["flags"]
        assert data["rewards"] == [None, None, None]
    else:
        assert all(r in (0.0, 1.0) for r in data["rewards"])
        assert data["rewards"][0] == data["rewards"][1]  # 42 and 42 get the same reward


def test_verifiable_mode_with_majority_makes_no_llm_call(http):
    body = {"prompt": PROMPT, "rollouts": ROLLOUTS, "mode": "verifiable", "options": {"aggregator": "majority"}}
    data = http.post("/rewards", json=body).json()
    assert data["rewards"] == [1.0, 1.0, 0.0]
    assert data["reference_answer"] == "42"
    assert data["usage"]["llm_calls"] == 0


def test_judge_mode(http):
    response = http.post("/rewards", json={"prompt": PROMPT, "rollouts": ROLLOUTS, "mode": "judge", "options": FAST})
    assert response.status_code == 200, response.text
    data = response.json()
    check_common(data, 3)
    assert data["rubric"] == [] and data["rubric_id"] is None
    assert data["usage"]["stages"]["equivalence"]["calls"] >= 3
    for detail in data["details"]:
        assert len(detail["verdicts"]) == 1


def test_judge_mode_with_given_reference(http):
    body = {"prompt": PROMPT, "rollouts": ROLLOUTS[:2], "mode": "judge", "reference": "The answer is 42."}
    data = http.post("/rewards", json=body).json()
    check_common(data, 2)
    assert data["aggregator"] == "given"
    assert "synthesis" not in data["usage"]["stages"]


def test_batch_route(http):
    groups = [
        {"prompt": PROMPT, "rollouts": ROLLOUTS[:2], "mode": "rubric", "options": FAST},
        {"prompt": "Name the capital of France.", "rollouts": ["Paris.", "It is Paris."], "mode": "judge", "options": FAST},
        {"prompt": PROMPT, "rollouts": ROLLOUTS, "mode": "verifiable", "options": {"aggregator": "majority"}},
    ]
    response = http.post("/rewards/batch", json={"groups": groups})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    for result, group in zip(results, groups):
        if result["ok"]:
            check_common(result["result"], len(group["rollouts"]))
            assert result["result"]["mode"] == group["mode"]
        else:
            # Only the anchor's output can fail a group here, and it must say so.
            assert result["error"]["type"] in ("rubric_generation_failed", "synthesis_failed")
    assert results[2]["ok"] and results[2]["result"]["rewards"] == [1.0, 1.0, 0.0]


def test_bad_input_over_http(http):
    response = http.post("/rewards", json={"prompt": PROMPT, "rollouts": [], "mode": "rubric"})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "rollouts"


def test_context_overflow_is_a_clear_422(http):
    long = "word " * 3000  # far beyond the CPU judge's 2048-token context
    response = http.post("/rewards", json={"prompt": PROMPT, "rollouts": [long, long], "mode": "rubric"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "llm_request_rejected"
    assert "context" in error["message"].lower() or "token" in error["message"].lower()


def test_unreachable_judge_is_503(judge_url, tmp_path):
    """The anchor is real, the judge points at a closed port: 503 with Retry-After, no rewards."""
    import httpx

    from .conftest import _stop, free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    process, url = start_service(
        {
            "CAT_ANCHOR_BASE_URL": judge_url,
            "CAT_ANCHOR_MODEL": local_judge.SERVED_MODEL,
            "CAT_JUDGE_BASE_URL": dead,
            "CAT_LLM_MAX_RETRIES": "1",
        },
        tmp_path / "service.log",
    )
    try:
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["ready"] is False
        body = {"prompt": PROMPT, "rollouts": ROLLOUTS[:2], "mode": "judge", "reference": "42"}
        response = httpx.post(f"{url}/rewards", json=body, timeout=120)
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["type"] == "llm_unavailable"
    finally:
        _stop(process)
