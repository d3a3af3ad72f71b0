"""The record dict: validation into one canonical form, conversion to and from table rows, and
the opaque pagination cursor.

A record is checked completely in ``record()``, before it reaches the outbox: a record the database
would refuse could otherwise never be flushed and would hold back every record behind it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime, timezone

from .engine import dumps

REQUIRED_STR = ("id", "prompt_hash", "mode", "anchor_model", "judge_model", "prompt_version")
OPTIONAL_STR = ("run_id", "group_id")
FIELDS = (
    "id", "created_at", "prompt_hash", "mode", "run_id", "step", "group_id",
    "anchor_model", "judge_model", "prompt_version", "request", "result",
)  # fmt: skip
JSON_FIELDS = ("request", "result")
_INT64 = 2**63


def parse_timestamp(value: str | datetime) -> datetime:
    """An aware datetime in UTC. Naive timestamps are refused: their zone would be a guess."""
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):  # fromisoformat accepts "Z" only from Python 3.11
            text = text[:-1] + "+00:00"
        value = datetime.fromisoformat(text)
    if not isinstance(value, datetime):
        raise ValueError("created_at must be an ISO 8601 string")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("created_at must carry a timezone, e.g. 2025-01-01T12:00:00+00:00")
    return value.astimezone(timezone.utc)


def format_timestamp(value: datetime) -> str:
    """The one spelling of a timestamp we return, fixed width. SQLite hands back naive UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _check_str(key: str, value, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise ValueError(f"record[{key!r}] must be a string{' or None' if optional else ''}")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise ValueError(f"record[{key!r}] contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise ValueError(f"record[{key!r}] is not valid Unicode") from exc


def serialize(record: Mapping) -> tuple[str, str, str, str]:
    """Validate ``record`` and write it as the outbox keeps it: (id, the record without its JSON
    parts as JSON, ``request`` as JSON, ``result`` as JSON), every field present and
    ``created_at`` in UTC. The JSON parts are written once, here; they go to the database as
    they are, so what reads back is exactly what this wrote (tuples as lists, and so on)."""
    if not isinstance(record, Mapping):
        raise ValueError("a record must be a dict")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown record fields: {', '.join(map(str, unknown))}")
    missing = [k for k in FIELDS if k not in record and k not in OPTIONAL_STR and k != "step"]
    if missing:
        raise ValueError(f"missing record fields: {', '.join(missing)}")
    out = {k: record.get(k) for k in FIELDS}
    for key in REQUIRED_STR:
        _check_str(key, out[key], optional=False)
    if not out["id"]:
        raise ValueError("record['id'] must not be empty")
    for key in OPTIONAL_STR:
        _check_str(key, out[key], optional=True)
    step = out["step"]
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or not -_INT64 <= step < _INT64):
        raise ValueError("record['step'] must be a 64-bit integer or None")
    try:
        out["created_at"] = format_timestamp(parse_timestamp(out["created_at"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"record['created_at']: {exc}") from exc
    parts = []
    for key in JSON_FIELDS:
        if not isinstance(out[key], Mapping):
            raise ValueError(f"record[{key!r}] must be a dict")
        try:
            parts.append(dumps(out.pop(key)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"record[{key!r}] is not JSON-serialisable: {exc}") from exc
    return out["id"], dumps(out), parts[0], parts[1]


def join(meta: str, request: str, result: str) -> str:
    """The whole record as one JSON text, from the parts ``serialize`` wrote."""
    return f'{meta[:-1]},"request":{request},"result":{result}}}'


def to_row(record: dict) -> dict:
    """Canonical record -> insert parameters."""
    return {**record, "created_at": parse_timestamp(record["created_at"])}


def from_row(row: Mapping) -> dict:
    """Table row -> canonical record."""
    out = {k: row[k] for k in FIELDS}
    out["created_at"] = format_timestamp(out["created_at"])
    return out


def encode_cursor(record: dict) -> str:
    """Where the next page starts: after this record in (created_at desc, id desc) order."""
    raw = json.dumps([record["created_at"], record["id"]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points after; ``ValueError`` for anything we did not issue."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        created_at, record_id = json.loads(raw)
        if not isinstance(created_at, str) or not isinstance(record_id, str):
            raise ValueError
        return parse_timestamp(created_at), record_id
    except (TypeError, ValueError, binascii.Error) as exc:
        raise ValueError("malformed cursor") from exc
