"""cat-reward eval's report arithmetic on constructed per-item results (exact numbers), its
error bookkeeping, the Markdown table and the PNG plot."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cat_reward.evaluation.report import markdown, scored_anything, summarize, table, write_outputs
from cat_reward.evaluation.scoring import HealthGroup, HealthResult, HealthRollout, MathGroup, MathResult, MathRollout

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def math_item(id, correct, groups, policy_error=None):
    """correct: per rollout True/False/None; groups: {G: (majority_ok, synthesis_ok, disagrees, error)}."""
    item = MathResult(id=id, problem="p", gold="1", meta={}, policy_error=policy_error)
    item.rollouts = [MathRollout(text="t", finish_reason="stop", correct=c, error=None if c is not None else "x: y") for c in correct]
    for g, (maj, syn, disagrees, error) in groups.items():
        item.groups.append(MathGroup(
            group_size=g,
            majority_correct=maj,
            synthesis_correct=syn,
            synthesis_no_answer=syn is False and disagrees == "no-answer",
            majority_no_answer=False,
            disagrees=bool(disagrees),
            error=error,
        ))
    return item.to_json()


def health_item(id, scores, synthesis, policy_error=None):
    """scores: per rollout (unclipped) or None; synthesis: {G: score or an error string}."""
    item = HealthResult(id=id, prompt=[], n_criteria=3, meta={}, policy_error=policy_error)
    item.rollouts = [HealthRollout(text="t", finish_reason="stop", score=s, error=None if s is not None else "verdict_failed: s1") for s in scores]
    for g, value in synthesis.items():
        if isinstance(value, str):
            item.groups.append(HealthGroup(group_size=g, error=value))
        else:
            item.groups.append(HealthGroup(group_size=g, synthesis_score=value))
    return item.to_json()


def test_math_summary_exact_numbers():
    items = [
        # majority wrong, synthesis right, they disagree (the case synthesis exists for)
        math_item("a", [False, False, True, False], {1: (False, True, True, None), 4: (False, True, True, None)}),
        # both right
        math_item("b", [True, True, True, None], {1: (True, True, False, None), 4: (True, True, False, None)}),
        # synthesis without an answer: wrong, counted, and a disagreement
        math_item("c", [True, False, True, True], {1: (True, False, "no-answer", None), 4: (True, False, "no-answer", None)}),
        # its synthesis at G=4 failed: left out at G=4 only
        math_item("d", [False, False, False, False], {1: (False, False, False, None), 4: (None, None, None, "synthesis_failed: empty")}),
        # no rollouts at all
        math_item("e", [], {1: (None, None, None, "policy_error: x"), 4: (None, None, None, "policy_error: x")}, policy_error="policy_error: x"),
    ]
    summary = summarize("math", items, [1, 4])
    assert summary["counts"] == {"items": 5, "policy_errors": 1}
    # a 1/4, b 3/3 (one rollout undecided), c 3/4, d 0/4
    assert summary["single_sample"] == {"accuracy": 7 / 15, "rollouts": 15, "errors": 1, "items": 4}
    g1, g4 = summary["by_group_size"]
    assert g1 == {
        "group_size": 1, "n_items": 4, "errors": 1, "error_reasons": {"policy_error": 1},
        "single_sample_accuracy": 7 / 15, "single_sample_rollouts": 15, "single_sample_errors": 1,
        "majority_accuracy": 2 / 4, "majority_no_answer": 0,
        "synthesis_accuracy": 2 / 4, "synthesis_no_answer": 1,
        "synthesis_disagrees_with_majority": 2 / 4, "disagreements": 2,
        "synthesis_right_when_disagreeing": 1 / 2, "synthesis_right_in_disagreements": 1, "majority_right_in_disagreements": 1,
    }
    assert g4 == {
        "group_size": 4, "n_items": 3, "errors": 2, "error_reasons": {"policy_error": 1, "synthesis_failed": 1},
        "single_sample_accuracy": 7 / 11, "single_sample_rollouts": 11, "single_sample_errors": 1,  # a 1/4, b 3/3, c 3/4
        "majority_accuracy": 2 / 3, "majority_no_answer": 0,
        "synthesis_accuracy": 2 / 3, "synthesis_no_answer": 1,
        "synthesis_disagrees_with_majority": 2 / 3, "disagreements": 2,
        "synthesis_right_when_disagreeing": 1 / 2, "synthesis_right_in_disagreements": 1, "majority_right_in_disagreements": 1,
    }


def test_rates_without_a_denominator_are_null_not_zero():
    items = [math_item("a", [True], {1: (True, True, False, None)}),
             math_item("b", [], {1: (None, None, None, "policy_error: down")}, policy_error="policy_error: down")]
    (row,) = summarize("math", items, [1])["by_group_size"]
    assert row["synthesis_right_when_disagreeing"] is None and row["disagreements"] == 0
    failed = summarize("math", items[1:], [1])
    assert failed["by_group_size"][0]["synthesis_accuracy"] is None
    assert failed["single_sample"]["accuracy"] is None
    assert not scored_anything({"summary": failed}) and scored_anything({"summary": summarize("math", items, [1])})


def test_healthbench_scores_clip_the_mean_not_each_response():
    items = [
        health_item("a", [1.0, -0.75, None], {1: 0.25, 2: -0.5}),
        health_item("b", [0.5, -1.0, 0.0], {1: 0.5, 2: "llm_unavailable: down"}),
    ]
    summary = summarize("healthbench", items, [1, 2])
    # all five scored rollouts: (1.0 - 0.75 + 0.5 - 1.0 + 0.0) / 5 = -0.05, clipped to 0
    assert summary["single_sample"] == {"score": 0.0, "rollouts": 5, "errors": 1, "items": 2}
    g1, g2 = summary["by_group_size"]
    assert g1 == {"group_size": 1, "n_items": 2, "errors": 0, "error_reasons": {},
                  "single_sample_score": 0.0, "single_sample_rollouts": 5, "single_sample_errors": 1,
                  "synthesis_score": pytest.approx(0.375)}
    # G=2: only item a; its rollouts average (1.0 - 0.75) / 2 = 0.125; its synthesis -0.5 clips to 0
    assert g2 == {"group_size": 2, "n_items": 1, "errors": 1, "error_reasons": {"llm_unavailable": 1},
                  "single_sample_score": pytest.approx(0.125), "single_sample_rollouts": 2, "single_sample_errors": 1,
                  "synthesis_score": 0.0}
    # per-response clipping would have said 0.5 for item a's rollouts: the semantics differ
    assert summarize("healthbench", [health_item("c", [2.0, 0.5], {1: 1.5})], [1])["by_group_size"][0]["synthesis_score"] == 1.0


def results_document(kind="math"):
    if kind == "math":
        items = [math_item("a", [False, True], {1: (False, True, True, None), 2: (False, True, True, None)}),
                 math_item("b", [], {1: (None, None, None, "policy_error: x"), 2: (None, None, None, "policy_error: x")},
                           policy_error="policy_error: x")]
    else:
        items = [health_item("a", [0.5, 0.25], {1: 0.75, 2: 0.5})]
    return {
        "schema": "cat-reward-eval/1",
        "kind": kind,
        "config": {
            "data": "builtin:" + kind, "items": len(items), "items_in_source": 10, "group_sizes": [1, 2],
            "policy": {"model": "pol", "url": "http://p/v1", "temperature": 0.7, "max_tokens": 64, "seed": 1},
            "anchor_model": "anc", "judge_model": "jud", "prompt_version": "cat-v1+x", "elapsed_s": 3.2,
        },
        "summary": summarize(kind, items, [1, 2]),
        "items": items,
    }


def test_math_table_and_markdown():
    document = results_document()
    lines = table(document).splitlines()
    assert lines[0].startswith("| G | items | errors | single sample | majority | synthesis | synthesis ≠ majority")
    assert lines[2] == "| 1 | 1 | 1 | 0.500 | 0.000 | 1.000 | 1.000 (1) | 1.000 (1/1) | 0 |"
    text = markdown(document)
    assert "# cat-reward eval: builtin:math (math)" in text
    assert "policy: `pol` at http://p/v1, temperature 0.7, max_tokens 64, seed 1" in text
    assert "Left out (not scored as 0): policy_error (G=1: 1, G=2: 1)" in text


def test_healthbench_table():
    lines = table(results_document("healthbench")).splitlines()
    assert lines[0] == "| G | items | errors | single sample | synthesis |"
    assert lines[2:] == ["| 1 | 1 | 0 | 0.375 | 0.750 |", "| 2 | 1 | 0 | 0.375 | 0.500 |"]


@pytest.mark.parametrize("kind", ["math", "healthbench"])
def test_outputs_are_written_and_the_png_is_valid(tmp_path, kind):
    document = results_document(kind)
    paths = write_outputs(document, tmp_path / "out")
    assert set(paths) == {"json", "markdown", "plot"}
    assert json.loads(paths["json"].read_text()) == document
    assert paths["markdown"].read_text() == markdown(document)
    data = paths["plot"].read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000
    with Image.open(paths["plot"]) as image:
        image.verify()
    with Image.open(paths["plot"]) as image:
        assert image.format == "PNG" and image.size == (768, 504)  # 6.4 x 4.2 in at 120 dpi
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is not None and len(colours) > 10  # lines and text, not a blank canvas


def test_no_plot_writes_no_png(tmp_path):
    paths = write_outputs(results_document(), tmp_path, plot=False)
    assert set(paths) == {"json", "markdown"} and not (tmp_path / "score_vs_G.png").exists()
