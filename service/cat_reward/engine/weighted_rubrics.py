"""Weighted rubrics (RaR, "Rubrics as Rewards", Gunjal et al. 2025): the anchor proposes each
criterion with an importance (essential / important / optional) and marks pitfalls, criteria
that lower the reward when met. Selected by ``options.rubric_prompt: "weighted"`` (prompt
template ``rubric_weighted.user``); the weights themselves come from ``ImportanceWeights`` at
aggregation time, so the rubric keeps only the importance.

Parsing is forced JSON where the backend can (``weighted_rubric_schema``) and robust where it
cannot: JSON objects with ``criterion``/``text`` and ``importance``, else lines such as
``[essential] ...`` or ``Pitfall: ...``. An item whose importance is missing or unknown is kept
as ``important`` and counted in the rubric info (``importance_defaulted``).
"""

from __future__ import annotations

import json
import re

from .types import IMPORTANCES

DEFAULT_IMPORTANCE = "important"
MAX_PITFALLS = 3
_PREFIX = re.compile(
    r"^\s*(?:[-*\u2022]|\(?\d{1,2}[.):])?\s*[\[(]?\s*(essential|important|optional|pitfall)\s*[\])]?\s*[:\-\u2013]?\s*(.+?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def weighted_rubric_schema(min_items: int, max_items: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "criteria": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "criterion": {"type": "string", "minLength": 10, "maxLength": 300},
                        "importance": {"type": "string", "enum": list(IMPORTANCES)},
                    },
                    "required": ["criterion", "importance"],
                    "additionalProperties": False,
                },
                "minItems": min_items,
                "maxItems": max_items + MAX_PITFALLS,
            }
        },
        "required": ["criteria"],
        "additionalProperties": False,
    }


def _importance(value) -> str | None:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in IMPORTANCES:
            return word
    return None


def _from_json(value) -> list[tuple[str, str | None]] | None:
    if isinstance(value, dict):
        for key in ("criteria", "rubric", "items"):
            if key in value:
                return _from_json(value[key])
        return None
    if not isinstance(value, list):
        return None
    items: list[tuple[str, str | None]] = []
    for item in value:
        if isinstance(item, str):
            match = _PREFIX.match(item)
            items.append((match.group(2), match.group(1).lower()) if match else (item, None))
        elif isinstance(item, dict):
            text = item.get("criterion") or item.get("text") or item.get("description")
            if isinstance(text, str):
                importance = _importance(item.get("importance"))
                if importance is None and item.get("pitfall") is True:
                    importance = "pitfall"
                items.append((text, importance))
    return items


def parse_weighted_criteria(text: str) -> list[tuple[str, str | None]]:
    """Every (criterion, importance or None) found in an anchor reply, in order."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        items = _from_json(value)
        if items:
            return [(t.strip(), i) for t, i in items]
    return [(m.group(2).strip().strip('"'), m.group(1).lower()) for m in _PREFIX.finditer(text)]
