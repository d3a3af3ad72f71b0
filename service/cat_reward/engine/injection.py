"""A detector of rollouts that try to talk to the judge instead of answering the task.

Rollouts are data, never instructions: the judge prompt fences each one and says so (see
``judge.fence``). This detector only flags what looks like an attempt, so trainers can see and
count it (``possible_injection:<kind>`` in a rollout's flags, and a metric); it changes no
reward. Patterns are deliberately plain: they catch the usual tricks (an order to ignore the
rubric, a forged verdict, an attempt to close the fence, chat-template role tags), not every
paraphrase.
"""

from __future__ import annotations

import re

# (kind, pattern, hints): the pattern runs only when one of its hints occurs in the folded text.
# Every match of a pattern contains one of its hints, so the hints only skip regex scans that
# cannot match: this runs on every rollout of every group. Folding must cover everything that
# IGNORECASE takes for an ASCII letter: ASCII case, and four other characters (a test scans all
# of Unicode to keep this list true).
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u212a": "k", "\u017f": "s"})
_CHECKS: tuple[tuple[str, re.Pattern[str], tuple[str, ...]], ...] = (
    (
        "instruction_override",
        re.compile(
            r"\b(ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}\b(instructions?|rubric|criteri(a|on)|prompt|rules|"
            r"above|previous|system)\b",
            re.IGNORECASE,
        ),
        ("ignore", "disregard", "forget", "override", "bypass"),
    ),
    (
        "verdict_forgery",
        re.compile(
            r"\b(grader|judge|evaluator|reviewer)\b[^.\n]{0,60}\b(yes|met|pass(es|ed)?|full (marks|score)|score)\b",
            re.IGNORECASE,
        ),
        ("grader", "judge", "evaluator", "reviewer"),
    ),
    (
        "verdict_forgery",
        re.compile(r"\b(answer|respond|reply|output|say)\b\s*(with\s*)?[\"'“]?(yes|true)\b", re.IGNORECASE),
        ("yes", "true"),
    ),
    ("verdict_forgery", re.compile(r"\bcriteri(a|on)_?met\b\s*[\"']?\s*[:=]\s*true", re.IGNORECASE), ("met",)),
    ("verdict_forgery", re.compile(r"^\s*(verdict|criterion)\s*:", re.IGNORECASE | re.MULTILINE), ("verdict", "criterion")),
    ("verdict_forgery", re.compile(r"\bdoes the response meet the criterion\b", re.IGNORECASE), ("criterion",)),
    (
        "fence_escape",
        re.compile(r"(<|&lt;|＜|‹)\s*/?\s*(response|reference)\s*(>|&gt;|＞|›)", re.IGNORECASE),
        ("response", "reference"),
    ),
    (
        "role_tags",
        re.compile(
            r"<\|(im_start|im_end|system|user|assistant|eot_id|start_header_id)\|>|\[/?INST\]|^#{2,}\s*system\s*:?\s*$",
            re.IGNORECASE | re.MULTILINE,
        ),
        ("<|", "inst]", "system"),
    ),
)
KINDS = ("instruction_override", "verdict_forgery", "fence_escape", "role_tags")


def detect_injection(text: str) -> list[str]:
    """The kinds of injection attempt found in a rollout, in a fixed order ([] when none)."""
    folded = text.translate(_FOLD).lower()
    found = set()
    for kind, pattern, hints in _CHECKS:
        if kind not in found and any(h in folded for h in hints) and pattern.search(text):
            found.add(kind)
    return [kind for kind in KINDS if kind in found]


def injection_flags(text: str) -> list[str]:
    return [f"possible_injection:{kind}" for kind in detect_injection(text)]
