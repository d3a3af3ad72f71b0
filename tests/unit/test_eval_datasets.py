"""cat-reward eval's data loading: both formats, auto-detection, the shipped fixtures, and the
error messages for bad input (file:line and the missing key)."""

from __future__ import annotations

import json
import sys
import types

import pytest

from cat_reward.evaluation.datasets import DatasetError, HealthItem, MathItem, load_dataset

MATH_LINES = [
    {"problem": "What is 2 + 3?", "answer": "5", "subject": "Prealgebra", "level": 1, "unique_id": "t/1"},
    {"problem": "Simplify 2/4.", "answer": "\\frac{1}{2}"},
]
HEALTH_LINE = {
    "prompt": [{"role": "user", "content": "Is water wet?"}],
    "rubrics": [
        {"criterion": "Says yes.", "points": 3, "tags": ["axis:accuracy"]},
        {"criterion": "Rambles.", "points": -2, "tags": []},
    ],
    "example_id": "hb-1",
}


def write(tmp_path, lines, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_math_jsonl_is_detected_and_read(tmp_path):
    path = write(tmp_path, MATH_LINES)
    data = load_dataset(str(path))
    assert data.format == "math" and data.total == 2 and data.source == str(path)
    first, second = data.items
    assert first == MathItem(id="t/1", problem="What is 2 + 3?", answer="5",
                             meta={"subject": "Prealgebra", "level": 1, "unique_id": "t/1"})
    assert second.id == "line-2" and second.answer == "\\frac{1}{2}" and second.meta == {}


def test_healthbench_jsonl_is_detected_and_read(tmp_path):
    data = load_dataset(str(write(tmp_path, [HEALTH_LINE, "", HEALTH_LINE])))  # blank lines are skipped
    assert data.format == "healthbench" and len(data.items) == 2
    item = data.items[0]
    assert isinstance(item, HealthItem) and item.id == "hb-1"
    assert item.prompt == ({"role": "user", "content": "Is water wet?"},)
    assert [(c.criterion, c.points, c.tags) for c in item.rubrics] == [
        ("Says yes.", 3.0, ("axis:accuracy",)),
        ("Rambles.", -2.0, ()),
    ]


def test_limit_keeps_the_first_items_and_the_source_count(tmp_path):
    data = load_dataset(str(write(tmp_path, MATH_LINES * 3)), limit=4)
    assert len(data.items) == 4 and data.total == 6


@pytest.mark.parametrize(
    "lines, fmt, message",
    [
        ([MATH_LINES[0], {"problem": "no answer here"}], None, "data.jsonl:2: missing key 'answer'"),
        ([MATH_LINES[0], "{not json"], None, "data.jsonl:2: not valid JSON"),
        ([{"question": "?", "solution": "!"}], None, "data.jsonl:1: cannot tell the format from the keys ['question', 'solution']"),
        ([HEALTH_LINE], "math", "data.jsonl:1: missing key 'problem'"),
        ([MATH_LINES[0], HEALTH_LINE], None, "data.jsonl:2: missing key 'problem'"),
        ([{"problem": "x", "answer": ""}], None, "data.jsonl:1: 'answer' is empty"),
        ([{"problem": "x", "answer": ["5"]}], None, "data.jsonl:1: 'answer' must be a string, not list"),
        ([{**HEALTH_LINE, "rubrics": [{"criterion": "a", "points": 0}]}], None, "'rubrics[0].points' must be a non-zero number"),
        ([{**HEALTH_LINE, "rubrics": [{"criterion": "a"}]}], None, "data.jsonl:1: missing key 'rubrics[0].points'"),
        ([{**HEALTH_LINE, "rubrics": [{"criterion": "bad", "points": -3}]}], None, "no criterion with positive points"),
        ([{**HEALTH_LINE, "prompt": [{"role": "user"}]}], None, "data.jsonl:1: missing key 'prompt[0].content'"),
        ([{**HEALTH_LINE, "prompt": []}], None, "'prompt' must be a non-empty list of chat messages"),
        ([{**HEALTH_LINE, "rubrics": [{"criterion": "a", "points": 1, "tags": "x"}]}], None, "'rubrics[0].tags' must be a list"),
        (["[1, 2]"], None, "data.jsonl:1: a record must be a JSON object, not list"),
        ([""], None, "no records"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, lines, fmt, message):
    path = write(tmp_path, lines)
    with pytest.raises(DatasetError) as error:
        load_dataset(str(path), fmt)
    assert message in str(error.value)
    if ":" in message.split(" ")[0]:
        assert str(path) in str(error.value)  # the message names the file


def test_missing_file_and_unknown_sources(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(str(tmp_path / "absent.jsonl"))
    with pytest.raises(DatasetError, match="unknown builtin data 'builtin:gsm8k'; known: builtin:math, builtin:healthbench"):
        load_dataset("builtin:gsm8k")
    with pytest.raises(DatasetError, match="unknown format 'csv'"):
        load_dataset("builtin:math", "csv")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="--limit must be at least 1"):
        load_dataset("builtin:math", limit=0)


def test_builtin_math_fixture():
    data = load_dataset("builtin:math")
    assert data.format == "math" and 20 <= len(data.items) <= 30
    assert len({item.id for item in data.items}) == len(data.items)
    assert all(item.meta.keys() == {"subject", "level", "unique_id"} for item in data.items)
    assert {item.meta["level"] for item in data.items} == {1, 2, 3, 4, 5}
    answers = [item.answer for item in data.items]
    for kind in ("\\frac{", "\\sqrt{", "\\pi", "\\infty"):
        assert any(kind in a for a in answers), kind
    assert any(a.startswith(("(", "[")) for a in answers)  # intervals
    assert any(a.isdigit() for a in answers)


def test_builtin_healthbench_fixture():
    data = load_dataset("builtin:healthbench", "healthbench")
    assert len(data.items) == 8
    assert len({item.id for item in data.items}) == 8
    for item in data.items:
        assert item.prompt[-1]["role"] == "user"
        assert any(c.points < 0 for c in item.rubrics), item.id  # negative criteria in every rubric
        assert any(c.points > 0 for c in item.rubrics)
        assert all(any(t.startswith("axis:") for t in c.tags) for c in item.rubrics)
    assert any(len(item.prompt) > 1 for item in data.items)  # multi-turn and system prompts too


def test_hf_source_without_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(DatasetError, match=r"hf:org/math:test needs the 'datasets' library \(pip install datasets\)"):
        load_dataset("hf:org/math")


def test_hf_source_reads_rows_through_datasets(monkeypatch):
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return [{"problem": "1 + 1?", "answer": "2", "solution": "..."}, {"problem": "?"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    with pytest.raises(DatasetError, match=r"hf:org/math:validation\[1\]: missing key 'answer'"):
        load_dataset("hf:org/math:validation")
    assert calls == [("org/math", "validation")]

    monkeypatch.setitem(
        sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda name, split: [{"problem": "1 + 1?", "answer": 2}])
    )
    data = load_dataset("hf:org/math")
    assert data.format == "math" and data.items[0].answer == "2" and data.items[0].id == "row-0"


def test_hf_load_failure_is_reported(monkeypatch):
    def broken(name, split):
        raise ConnectionError("hub unreachable")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=broken))
    with pytest.raises(DatasetError, match="hf:org/x:test: could not load it: ConnectionError: hub unreachable"):
        load_dataset("hf:org/x")
