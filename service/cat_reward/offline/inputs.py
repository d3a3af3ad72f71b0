"""Rows of a ``cat-reward score`` input, one group per row, as request bodies.

Sources:
    PATH.parquet      one group per row (pyarrow)
    hf:NAME[:SPLIT]   ``datasets.load_dataset(NAME, split=SPLIT)`` (split ``train`` by default): a
                      dataset of the Hugging Face hub, or a local folder of data files
    any other PATH    JSONL: one JSON object per line

In a table (Parquet, a dataset) a column of objects holds every key any row has, null where a
row has none: a null inside an object means "not given", as it does in the API, and is dropped.

A row's fields are mapped to the body of ``POST /rewards`` by a ``FieldMap`` (``--prompt-field``
and the like); fields the map does not name are ignored, so a dataset's extra columns may stay.
Every row keeps its 1-based number (the line of a JSONL file, the row of a table), so a bad row
is reported by it. Rows are never dropped here: a row that cannot be read is yielded with its
error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol


class InputError(Exception):
    """The input as a whole cannot be read (missing file, missing library, bad source)."""


class BadRow(Exception):
    """One row cannot be a group; the message names the field and the rule."""


@dataclass(frozen=True)
class FieldMap:
    """Which input field holds each part of a group (``POST /rewards`` body names by default)."""

    id: str = "id"
    prompt: str = "prompt"
    rollouts: str = "rollouts"
    reference: str = "reference"
    mode: str = "mode"
    rubric: str = "rubric"
    token_logprobs: str = "token_logprobs"
    options: str = "options"
    metadata: str = "metadata"


BODY_FIELDS = tuple(f.name for f in fields(FieldMap) if f.name != "id")


@dataclass(frozen=True)
class Row:
    number: int  # 1-based line (JSONL) or row (Parquet, dataset)
    record: dict | None  # None when the row could not be read
    error: str | None = None


class Source:
    """An input: its rows in order, and how many there are when that is known up front."""

    def __init__(self, name: str, total: int | None, rows: Iterator[Row]) -> None:
        self.name = name
        self.total = total
        self._rows = rows

    def __iter__(self) -> Iterator[Row]:
        return self._rows


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.strip()
            if not text:
                continue  # a blank line is no group
            try:
                record = json.loads(text)
            except (ValueError, UnicodeDecodeError) as exc:
                yield Row(number, None, f"invalid JSON: {exc}")
                continue
            if not isinstance(record, dict):
                yield Row(number, None, f"a line must be a JSON object, not {type(record).__name__}")
                continue
            yield Row(number, record)


def _count_jsonl(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                count += 1
    return count


def _table_rows(batches: Iterator[list[dict]]) -> Iterator[Row]:
    number = 0
    for batch in batches:
        for record in batch:
            number += 1
            yield Row(number, record)


def open_source(spec: str) -> Source:
    """The rows of ``spec`` (a path, or ``hf:NAME[:SPLIT]``). Raises ``InputError``."""
    if spec.startswith("hf:"):
        return _hf_source(spec)
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"input {spec!r} is not a file")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError("Parquet input needs pyarrow: pip install 'cat-reward[offline]'") from None
        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
            raise InputError(f"cannot read {spec} as Parquet: {exc}") from None
        batches = (batch.to_pylist() for batch in parquet.iter_batches(batch_size=1024))
        return Source(spec, parquet.metadata.num_rows, _table_rows(batches))
    return Source(spec, _count_jsonl(path), _jsonl_rows(path))


def _hf_source(spec: str) -> Source:
    name, _, split = spec[3:].partition(":")
    if not name:
        raise InputError("hf: needs a dataset name or folder, e.g. hf:my-org/my-groups:test")
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise InputError(f"{spec} needs the 'datasets' library: pip install 'cat-reward[hf]'") from None
    try:
        table = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds
        raise InputError(f"cannot load {spec}: {type(exc).__name__}: {exc}") from None
    # A slice of a Dataset is a dict of columns; each becomes rows.
    batches = (
        [dict(zip(columns, values)) for values in zip(*columns.values())]
        for columns in (table[i : i + 1024] for i in range(0, len(table), 1024))
    )
    return Source(spec, len(table), _table_rows(batches))


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def body_of(record: dict, fields: FieldMap, defaults: dict[str, Any] | None = None) -> tuple[str | None, dict]:
    """(the row's id or None, the ``POST /rewards`` body). ``defaults`` (``--mode``, ``--options``)
    fill what the row leaves out; a row's own ``options`` win key by key. Raises ``BadRow``."""
    body: dict[str, Any] = {}
    for name in BODY_FIELDS:
        source = getattr(fields, name)
        value = record.get(source)
        if value is not None:
            body[name] = _without_nulls(value)
    for name in ("prompt", "rollouts"):
        if name not in body:
            raise BadRow(f"missing field {getattr(fields, name)!r} (the group's {name})")
    defaults = defaults or {}
    if "mode" not in body and defaults.get("mode"):
        body["mode"] = defaults["mode"]
    if defaults.get("options"):
        options = body.get("options", {})
        if not isinstance(options, dict):
            raise BadRow(f"field {fields.options!r} must be an object")
        body["options"] = {**defaults["options"], **options}
    raw_id = record.get(fields.id)
    if raw_id is not None and not isinstance(raw_id, (str, int)):
        raise BadRow(f"field {fields.id!r} must be a string or an integer")
    return (str(raw_id) if raw_id is not None else None), body


def group_key(group_id: str | None, body: dict) -> str:
    """The group's stable key: its id (when it has one) and everything sent to score it, so the
    same row scored with other options is another group, and a rerun finds the same key."""
    canonical = json.dumps({"id": group_id, "request": body}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class RowReader(Protocol):
    """How a row becomes a request: handed in by the command line (``api.rows.ROWS``, rows read
    as ``POST /rewards`` bodies), so this package needs no HTTP import."""

    def validate(self, body: dict) -> Any: ...  # BadRow names the field and the rule
    def normalized(self, request: Any) -> dict: ...  # the body as sent, and what its key is from
    def job(self, request: Any, defaults: Any, default_mode: str) -> Any: ...
    def status(self, exc: Exception) -> int: ...
