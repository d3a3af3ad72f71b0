import json

import pytest

from cat_reward.engine.self_proposed_rubrics import dedupe_criteria, parse_criteria

FIVE = [f"The response mentions point number {i}." for i in range(1, 6)]


def test_parse_plain_json():
    assert parse_criteria(json.dumps({"criteria": FIVE})) == FIVE


def test_parse_json_inside_prose_and_fences():
    text = "Sure! Here is the rubric:\n```json\n" + json.dumps({"criteria": FIVE}) + "\n```\nHope it helps."
    assert parse_criteria(text) == FIVE


def test_parse_json_list_of_objects():
    text = json.dumps([{"criterion": c, "points": 1} for c in FIVE])
    assert parse_criteria(text) == FIVE


def test_parse_xml_tags():
    text = "<rubric>" + "".join(f"<criterion>{c}</criterion>" for c in FIVE) + "</rubric>"
    assert parse_criteria(text) == FIVE


def test_parse_numbered_and_bulleted_lists():
    text = "Criteria:\n" + "\n".join(f"{i}. {c}" for i, c in enumerate(FIVE[:3], 1)) + "\n- " + FIVE[3] + "\n* " + FIVE[4]
    assert parse_criteria(text) == FIVE


def test_parse_nothing():
    assert parse_criteria("I cannot write a rubric for this.") == []


def test_dedupe_ignores_case_spacing_and_punctuation():
    items = [
        "The response states the answer is 5.",
        "the response states the answer is 5",
        "The  response states the answer is 5!",
        "The response shows its work.",
    ]
    assert dedupe_criteria(items) == ["The response states the answer is 5.", "The response shows its work."]


def test_dedupe_against_existing_and_drops_fragments():
    assert dedupe_criteria(["ok", "The response shows its work.", "x" * 600], existing=["The response shows its work"]) == []


@pytest.mark.parametrize("bad", ["", "{}", '{"criteria": "not a list"}', "[1, 2, 3]"])
def test_parse_degenerate_json(bad):
    assert parse_criteria(bad) == []


def test_dedupe_strips_enumeration_before_comparing():
    items = ["1. It is 52.", "2. It is 52.", "Criterion 3: It is 52.", "- The response shows its work."]
    assert dedupe_criteria(items) == ["It is 52.", "The response shows its work."]
