"""Final-answer extraction for verifiable tasks.

Extractors are tried in the order configured; the first that finds something wins, and
its name is reported beside the answer. ``boxed`` takes the last ``\\boxed{...}`` (or
``\\fbox{...}``) with balanced braces; ``answer_is`` takes "final answer: X" /
"the answer is X"; ``last_number`` takes the last number in the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_BOX_OPENERS = ("\\boxed", "\\fbox")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*(?:\$+)?\s*(?P<ans>[^\n$]+?)\s*(?:\$+)?\s*(?:[.!]\s*)?$",
    re.IGNORECASE | re.MULTILINE,
)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")


def extract_boxed(text: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}``; None if there is none or it never closes."""
    best: str | None = None
    i = 0
    while True:
        starts = [(text.find(op, i), op) for op in _BOX_OPENERS]
        starts = [(pos, op) for pos, op in starts if pos != -1]
        if not starts:
            return best
        pos, op = min(starts)
        j = pos + len(op)
        while j < len(text) and text[j] == " ":
            j += 1
        if j >= len(text) or text[j] != "{":
            i = pos + len(op)
            continue
        depth, k = 0, j
        while k < len(text):
            ch = text[k]
            if ch == "\\" and k + 1 < len(text):
                k += 2
                continue
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        if depth != 0:
            return best
        content = text[j + 1 : k].strip()
        if content:
            best = content
        i = k + 1


def extract_answer_is(text: str) -> str | None:
    matches = list(_ANSWER_IS.finditer(text))
    if not matches:
        return None
    answer = matches[-1].group("ans").strip().rstrip(".").strip()
    return answer or None


def extract_last_number(text: str) -> str | None:
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "boxed": extract_boxed,
    "answer_is": extract_answer_is,
    "last_number": extract_last_number,
}


def validate_extractors(names: Sequence[str]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in EXTRACTORS]
    if unknown:
        raise ValueError(f"unknown answer extractor(s) {unknown}; known: {sorted(EXTRACTORS)}")
    if not names:
        raise ValueError("at least one answer extractor is needed")
    return tuple(names)


def extract_answer(text: str, extractors: Sequence[str] = ("boxed", "answer_is")) -> tuple[str | None, str | None]:
    """Return (answer, extractor name), or (None, None) when no extractor finds one."""
    for name in extractors:
        answer = EXTRACTORS[name](text)
        if answer:
            return answer, name
    return None, None
