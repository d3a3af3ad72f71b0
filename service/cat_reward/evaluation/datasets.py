"""Evaluation data: MATH-500-form and HealthBench-form items, from a JSONL file, the fixtures
shipped with the package, or the ``datasets`` library.

    math         {"problem": str, "answer": str, ...}            (MATH-500: + subject, level, unique_id)
    healthbench  {"prompt": [{"role", "content"}, ...],
                  "rubrics": [{"criterion", "points", "tags"}, ...], ...}    (+ example_id)

Sources: a path; ``builtin:math`` / ``builtin:healthbench`` (the synthetic fixtures in
``fixtures/``, written for this project); ``hf:<name>[:<split>]`` (needs ``datasets``). The
format is detected from the first record's keys unless given. A record that does not fit is an
error naming where it is (``file:line``) and what is wrong, never skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

Format = Literal["math", "healthbench"]
FORMATS: tuple[str, ...] = ("math", "healthbench")
BUILTIN = {"math": "math.jsonl", "healthbench": "healthbench.jsonl"}
REQUIRED: dict[str, tuple[str, ...]] = {"math": ("problem", "answer"), "healthbench": ("prompt", "rubrics")}
DEFAULT_HF_SPLIT = "test"


class DatasetError(ValueError):
    """The data cannot be read as asked. The message says where and why."""


@dataclass(frozen=True)
class MathItem:
    id: str
    problem: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)  # subject, level, unique_id, ... as given


@dataclass(frozen=True)
class RubricCriterion:
    criterion: str
    points: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class HealthItem:
    id: str
    prompt: tuple[dict[str, str], ...]  # chat messages: {"role", "content"}
    rubrics: tuple[RubricCriterion, ...]
    meta: dict[str, Any] = field(default_factory=dict)


Item = MathItem | HealthItem


@dataclass(frozen=True)
class Dataset:
    source: str  # as given: a path, builtin:..., hf:...
    format: Format
    items: list[Item]
    total: int  # records in the source before --limit


def detect_format(record: dict, where: str) -> Format:
    keys = set(record)
    matches = [name for name, required in REQUIRED.items() if keys >= set(required)]
    if len(matches) == 1:
        return matches[0]  # type: ignore[return-value]
    if not matches:
        raise DatasetError(
            f"{where}: cannot tell the format from the keys {sorted(keys)}: math needs 'problem' and 'answer', "
            "healthbench needs 'prompt' and 'rubrics' (or pass --format)"
        )
    raise DatasetError(f"{where}: the keys {sorted(keys)} fit both formats; pass --format math or --format healthbench")


def _text(value: Any, key: str, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DatasetError(f"{where}: '{key}' must be a string, not {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise DatasetError(f"{where}: '{key}' is empty")
    return text


def parse_math(record: dict, where: str, default_id: str) -> MathItem:
    for key in REQUIRED["math"]:
        if key not in record:
            raise DatasetError(f"{where}: missing key '{key}' (format math needs 'problem' and 'answer')")
    problem = _text(record["problem"], "problem", where)
    answer = _text(record["answer"], "answer", where)
    meta = {k: v for k, v in record.items() if k in ("subject", "level", "unique_id")}
    item_id = record.get("unique_id") or record.get("id") or default_id
    return MathItem(id=str(item_id), problem=problem, answer=answer, meta=meta)


def _messages(value: Any, where: str) -> tuple[dict[str, str], ...]:
    if isinstance(value, str):  # a bare question: one user turn
        return ({"role": "user", "content": _text(value, "prompt", where)},)
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: 'prompt' must be a non-empty list of chat messages")
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise DatasetError(f"{where}: prompt[{i}] must be an object with 'role' and 'content'")
        for key in ("role", "content"):
            if key not in message:
                raise DatasetError(f"{where}: missing key 'prompt[{i}].{key}'")
            if not isinstance(message[key], str):
                raise DatasetError(f"{where}: 'prompt[{i}].{key}' must be a string")
        if not message["role"].strip():
            raise DatasetError(f"{where}: 'prompt[{i}].role' is empty")
        messages.append({"role": message["role"], "content": message["content"]})
    return tuple(messages)


def _rubrics(value: Any, where: str) -> tuple[RubricCriterion, ...]:
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: 'rubrics' must be a non-empty list of {{criterion, points, tags}}")
    criteria = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise DatasetError(f"{where}: rubrics[{i}] must be an object with 'criterion' and 'points'")
        for key in ("criterion", "points"):
            if key not in entry:
                raise DatasetError(f"{where}: missing key 'rubrics[{i}].{key}'")
        text = _text(entry["criterion"], f"rubrics[{i}].criterion", where)
        points = entry["points"]
        if isinstance(points, bool) or not isinstance(points, (int, float)) or not math.isfinite(points) or points == 0:
            raise DatasetError(f"{where}: 'rubrics[{i}].points' must be a non-zero number, not {points!r}")
        tags = entry.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise DatasetError(f"{where}: 'rubrics[{i}].tags' must be a list of strings")
        criteria.append(RubricCriterion(criterion=text, points=float(points), tags=tuple(tags)))
    if not any(c.points > 0 for c in criteria):
        raise DatasetError(f"{where}: 'rubrics' has no criterion with positive points, so no score can be computed")
    return tuple(criteria)


def parse_healthbench(record: dict, where: str, default_id: str) -> HealthItem:
    for key in REQUIRED["healthbench"]:
        if key not in record:
            raise DatasetError(f"{where}: missing key '{key}' (format healthbench needs 'prompt' and 'rubrics')")
    meta = {k: v for k, v in record.items() if k in ("example_id", "ideal_completions_data", "tags")}
    item_id = record.get("example_id") or record.get("id") or default_id
    return HealthItem(id=str(item_id), prompt=_messages(record["prompt"], where), rubrics=_rubrics(record["rubrics"], where), meta=meta)


PARSERS = {"math": parse_math, "healthbench": parse_healthbench}


def parse_records(records, fmt: Format | None, location: str) -> tuple[Format, list[Item]]:
    """``records``: (where, record-or-error) pairs. Returns the format and the items."""
    items: list[Item] = []
    for where, record, default_id in records:
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: a record must be a JSON object, not {type(record).__name__}")
        if fmt is None:
            fmt = detect_format(record, where)
        items.append(PARSERS[fmt](record, where, default_id))
    if not items:
        raise DatasetError(f"{location}: no records")
    return fmt, items  # type: ignore[return-value]


def _jsonl_records(text: str, name: str):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        yield where, record, f"line-{number}"


def _hf_records(name: str, split: str):
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise DatasetError(
            f"hf:{name}:{split} needs the 'datasets' library (pip install datasets); "
            "or download the data as JSONL and pass its path"
        ) from None
    try:
        rows = datasets.load_dataset(name, split=split)
    except Exception as exc:  # noqa: BLE001 - whatever the hub or the cache says, said plainly
        raise DatasetError(f"hf:{name}:{split}: could not load it: {type(exc).__name__}: {exc}") from None
    for index, row in enumerate(rows):
        yield f"hf:{name}:{split}[{index}]", dict(row), f"row-{index}"


def load_dataset(source: str, fmt: Format | None = None, limit: int | None = None) -> Dataset:
    """Read ``source`` (path, builtin:NAME, hf:NAME[:SPLIT]) as ``fmt`` (auto-detected when None)."""
    if fmt is not None and fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if limit is not None and limit < 1:
        raise DatasetError("--limit must be at least 1")
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name not in BUILTIN:
            raise DatasetError(f"unknown builtin data {source!r}; known: {', '.join('builtin:' + n for n in BUILTIN)}")
        text = resources.files(__package__).joinpath("fixtures", BUILTIN[name]).read_text(encoding="utf-8")
        records = _jsonl_records(text, f"{source} ({BUILTIN[name]})")
    elif source.startswith("hf:"):
        spec = source[3:]
        name, _, split = spec.partition(":")
        if not name:
            raise DatasetError("hf: needs a dataset name, as hf:<name>[:<split>]")
        records = _hf_records(name, split or DEFAULT_HF_SPLIT)
    else:
        path = Path(source)
        if not path.is_file():
            raise DatasetError(f"{source}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{source}: cannot read it: {exc}") from None
        records = _jsonl_records(text, source)
    fmt, items = parse_records(records, fmt, source)
    total = len(items)
    if limit is not None:
        items = items[:limit]
    return Dataset(source=source, format=fmt, items=items, total=total)
