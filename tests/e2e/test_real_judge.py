"""Every mode and the batch route against the real CPU vLLM judge, over real HTTP.

SmolLM2-135M is weak: these tests check structure and bookkeeping, never answer quality.
"""

from __future__ import annotations

import time

import httpx
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
    # On vLLM the verdicts go out as batched single-token scores: few calls, one token each.
    assert 1 <= usage["stages"]["verdict"]["calls"] <= 3 * n
    assert usage["stages"]["verdict"]["completion_tokens"] <= 3 * n * 3
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
    assert data["usage"]["stages"]["equivalence"]["calls"] >= 1
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


def test_retry_hits_the_cache_and_the_history(http):
    """Same request twice: same rubric_id and rewards, no LLM call the second time, one record."""
    body = {
        "prompt": "Explain briefly why the sky is blue.",
        "rollouts": ["Sunlight scatters off air molecules; blue scatters most.", "Because of Rayleigh scattering."],
        "mode": "rubric",
        "options": FAST,
        "metadata": {"run_id": "e2e-retry", "step": 3, "group_id": "g1", "tags": {"split": "train"}},
    }
    first = http.post("/rewards", json=body)
    if first.status_code == 502:
        pytest.skip("the small anchor failed to write a rubric this time (an explicit 502)")
    assert first.status_code == 200, first.text
    second = http.post("/rewards", json=body)
    assert second.status_code == 200, second.text
    a, b = first.json(), second.json()
    assert a["usage"]["llm_calls"] > 0
    assert b["usage"]["llm_calls"] == 0
    assert b["usage"]["cache_hits"]["reference"] == 1 and b["usage"]["cache_hits"]["rubric"] == 1
    assert b["rubric_id"] == a["rubric_id"] and b["rewards"] == a["rewards"] and b["rubric"] == a["rubric"]

    record = http.get(f"/rubrics/{a['rubric_id']}")
    assert record.status_code == 200, record.text
    rec = record.json()
    assert rec["request"]["rollouts"] == body["rollouts"]
    assert rec["request"]["metadata"]["tags"] == {"split": "train"}
    assert (rec["run_id"], rec["step"], rec["group_id"]) == ("e2e-retry", 3, "g1")
    assert rec["result"]["rubric"] == a["rubric"] and rec["result"]["rewards"] == a["rewards"]
    assert rec["anchor_model"] == rec["judge_model"] == local_judge.SERVED_MODEL
    assert rec["prompt_version"] == a["provenance"]["prompt_version"]
    verdicts = [v for d in rec["result"]["details"] for v in d["verdicts"]]
    assert len(verdicts) == len(body["rollouts"]) * len(a["rubric"])
    assert all(v["p_yes"] is not None for v in verdicts if v["met"] is not None)

    # Lists read the database, which the outbox fills every second (CAT_HISTORY_FLUSH_INTERVAL_S).
    deadline = time.monotonic() + 10
    while True:
        page = http.get("/rubrics", params={"run_id": "e2e-retry"}).json()
        if page["items"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [item["id"] for item in page["items"]] == [a["rubric_id"]]  # one record, not two
    by_prompt = http.get("/rubrics", params={"prompt": body["prompt"]}).json()
    assert a["rubric_id"] in [item["id"] for item in by_prompt["items"]]
    assert http.get("/rubrics/rb_doesnotexist").status_code == 404


def test_history_survives_a_restart(judge_url, tmp_path):
    """SQLite history (the embedded default): records written before a restart are there after it."""
    from .conftest import _stop

    env = {
        "CAT_ANCHOR_BASE_URL": judge_url,
        "CAT_ANCHOR_MODEL": local_judge.SERVED_MODEL,
        "CAT_DATA_DIR": str(tmp_path / "data"),
    }
    body = {"prompt": PROMPT, "rollouts": ROLLOUTS, "mode": "verifiable", "options": {"aggregator": "majority"},
            "metadata": {"run_id": "restart"}}
    process, url = start_service(env, tmp_path / "first.log")
    try:
        ids = []
        for step in range(3):
            response = httpx.post(f"{url}/rewards", json={**body, "metadata": {"run_id": "restart", "step": step}}, timeout=60)
            assert response.status_code == 200, response.text
            ids.append(response.json()["record_id"])
    finally:
        _stop(process)
    process, url = start_service(env, tmp_path / "second.log")
    try:
        for record_id in ids:
            record = httpx.get(f"{url}/rubrics/{record_id}", timeout=30)
            assert record.status_code == 200
            assert record.json()["result"]["rewards"] == [1.0, 1.0, 0.0]
        page = httpx.get(f"{url}/rubrics", params={"run_id": "restart", "limit": 2}, timeout=30).json()
        rest = httpx.get(f"{url}/rubrics", params={"run_id": "restart", "cursor": page["next_cursor"]}, timeout=30).json()
        assert [i["step"] for i in page["items"] + rest["items"]] == [2, 1, 0]
        assert (tmp_path / "data" / "history.sqlite3").exists()
    finally:
        _stop(process)


def test_scrl_labels(http):
    body = {
        "prompt": PROMPT,
        "rollouts": ROLLOUTS + ["\\boxed{42}", "no idea"],
        "mode": "verifiable",
        "options": {"aggregator": "scrl"},
        "token_logprobs": [[-0.2, -0.4]] * 4 + [[-1.5, -2.5]],
    }
    data = http.post("/rewards", json=body).json()
    # 42 has 3/5 and leads 52 (1/5) by 0.4: positive; 52's share 0.2 is not below 0.15: neutral.
    assert data["rewards"] == [1.0, 1.0, 0.0, 1.0, -1.0]
    assert data["reference_details"]["entropy_gate"] == "on"
    assert data["usage"]["llm_calls"] == 0


def test_supplied_healthbench_rubric(http):
    body = {
        "prompt": [{"role": "user", "content": "I have had a fever since yesterday. What should I do?"}],
        "rollouts": [
            "Rest, drink plenty of fluids, and see a doctor if it lasts more than three days.",
            "Take antibiotics right away.",
        ],
        "rubric": [
            {"criterion": "Advises drinking fluids.", "points": 3, "tags": ["axis:completeness"]},
            {"criterion": "Advises seeing a doctor if the fever persists.", "points": 5},
            {"criterion": "Recommends antibiotics without a prescription.", "points": -4},
        ],
    }
    response = http.post("/rewards", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["aggregator"] == "none"
    assert "synthesis" not in data["usage"]["stages"] and "rubric" not in data["usage"]["stages"]
    assert data["usage"]["stages"]["verdict"]["calls"] >= 1
    for detail in data["details"]:
        if detail["reward"] is not None:
            met_points = sum(c["weight"] for c, v in zip(data["rubric"], detail["verdicts"]) if v["met"])
            assert detail["reward"] == pytest.approx(min(1.0, max(0.0, met_points / 8)))
    assert [c["source"] for c in data["rubric"]] == ["caller"] * 3
    assert len(data["diagnostics"]["criteria"]) == 3


def test_self_proposed_and_supplied_side_by_side_with_regeneration(http):
    body = {
        "prompt": "Give one tip for sleeping better.",
        "rollouts": ["Keep a regular bedtime.", "Avoid caffeine in the evening.", "Keep the bedroom dark and cool."],
        "rubric": [{"criterion": "Gives a concrete, actionable tip.", "points": 1}],
        "options": {**FAST, "rubric_source": "both", "regenerate_flat_rubric": True},
    }
    response = http.post("/rewards", json=body)
    if response.status_code == 502:
        pytest.skip("the small anchor failed to write a rubric this time (an explicit 502)")
    assert response.status_code == 200, response.text
    data = response.json()
    check_common(data, 3)
    assert {c["source"] for c in data["rubric"]} == {"anchor"}
    assert len(data["supplied"]["rewards"]) == 3 and data["supplied"]["rubric"][0]["source"] == "caller"
    diagnostics = data["diagnostics"]
    assert diagnostics["discriminating_criteria"] == sum(c["discriminating"] for c in diagnostics["criteria"])
    # Regeneration fires only on a flat first rubric; either way the record says which happened.
    assert diagnostics["regenerated"] == bool(data["reference_details"]["rubric"].get("regenerated"))
    if diagnostics["regenerated"]:
        assert data["usage"]["stages"]["rubric"]["calls"] >= 2
