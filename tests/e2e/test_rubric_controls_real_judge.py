"""Weighted rubric prompt, soft aggregation, length penalty counted by the judge's /tokenize and
an ensemble of three verdict paraphrases, in one group against the real CPU vLLM judge.

SmolLM2-135M is weak: this checks structure and bookkeeping, never the quality of its rubric."""

from __future__ import annotations

import pytest

from cat_reward import local_judge

pytestmark = pytest.mark.e2e

PROMPT = "What is 12 + 30? Give the final answer in \\boxed{}."
ROLLOUTS = ["12 + 30 = 42. The answer is \\boxed{42}.", "It is \\boxed{52}."]
MEMBERS = ["verdict", "verdict_p1", "verdict_p2"]


def test_weighted_soft_length_penalty_and_paraphrase_ensemble(http):
    options = {
        "synthesis": {"max_tokens": 160},
        "rubric": {"max_tokens": 400},
        "seed": 1,
        "rubric_prompt": "weighted",
        "aggregation": "soft",
        "length_penalty": {"max_tokens": 12, "penalty": 1},
        "ensemble": [{"prompt": p} for p in MEMBERS],
    }
    response = http.post("/rewards", json={"prompt": PROMPT, "rollouts": ROLLOUTS, "mode": "rubric", "options": options})
    assert response.status_code == 200, response.text
    data = response.json()
    scoring = data["scoring"]
    assert scoring["aggregation"] == "soft"
    assert scoring["prompts"]["rubric"] == "rubric_weighted.user"
    assert scoring["prompts"]["verdict"] == [f"{p}.user" for p in MEMBERS]
    assert all(c["importance"] in ("essential", "important", "optional", "pitfall") for c in data["rubric"])
    assert [m["model"] for m in scoring["ensemble"]["members"]] == [local_judge.SERVED_MODEL] * 3
    assert set(scoring["ensemble"]["disagreement"]) == {c["id"] for c in data["rubric"]}
    # The judge's /tokenize counted the tokens; the shorter rollout is within 12, the longer not.
    lengths = [d["length"] for d in data["details"]]
    assert all(ln["tokenizer"].startswith("judge /tokenize") for ln in lengths)
    assert lengths[0]["tokens"] > 12 >= lengths[1]["tokens"] > 0
    assert scoring["length_penalty"]["penalised"] == 1
    for reward, detail in zip(data["rewards"], data["details"]):
        for v in detail["verdicts"]:
            assert [m["member"] for m in v["members"]] == [f"judge/{p}" for p in MEMBERS]
            ps = [m["p_yes"] for m in v["members"]]
            assert v["p_yes"] == pytest.approx(sum(ps) / 3) and v["spread"] == pytest.approx(max(ps) - min(ps))
        before = detail["length"]["reward_before_penalty"]
        # soft: the mean P(yes) with ±1 weights (pitfalls subtract), clipped, then the penalty
        weights = scoring["criterion_weights"]
        positive = sum(w for w in weights.values() if w > 0)
        expected = min(1.0, max(0.0, sum(weights[v["criterion_id"]] * v["p_yes"] for v in detail["verdicts"]) / positive))
        assert before == pytest.approx(expected)
        assert reward == pytest.approx(before - detail["length"]["penalty"])
    # every member's verdicts went to the judge in batches, not one call per verdict
    n = len(data["rubric"]) * len(ROLLOUTS)
    assert data["usage"]["stages"]["verdict"]["calls"] < 3 * n
