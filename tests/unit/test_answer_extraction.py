import pytest

from cat_reward.engine.answer_extraction import extract_answer, extract_boxed, validate_extractors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{5}.", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("first \\boxed{1} then \\boxed{2}", "2"),
        ("nested \\boxed{\\{1, \\{2\\}\\}}", "\\{1, \\{2\\}\\}"),
        ("\\boxed {x^{2}}", "x^{2}"),
        ("\\fbox{7}", "7"),
        ("unclosed \\boxed{3", None),
        ("no box here", None),
        ("empty \\boxed{}", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_boxed_wins_over_fallback():
    assert extract_answer("The answer is 4. Actually \\boxed{5}") == ("5", "boxed")


def test_answer_is_fallback():
    assert extract_answer("Adding them up, the final answer is 12.") == ("12", "answer_is")
    assert extract_answer("Answer: $\\frac{3}{4}$") == ("\\frac{3}{4}", "answer_is")


def test_no_answer():
    assert extract_answer("I am not sure about this one.") == (None, None)


def test_last_number_only_when_configured():
    text = "We get 3 apples and then 7 more, 10 in total"
    assert extract_answer(text) == (None, None)
    assert extract_answer(text, ("boxed", "last_number")) == ("10", "last_number")


def test_unknown_extractor_rejected():
    with pytest.raises(ValueError, match="unknown answer extractor"):
        validate_extractors(["boxed", "regex"])
