"""Recording, reading and listing, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta, timezone

import pytest

from cat_reward.storage import HistoryStore

from .conftest import assert_same_record, make_record

pytestmark = pytest.mark.anyio


async def flushed(store: HistoryStore) -> None:
    await store.flush()
    assert store.outbox_depth() == 0


async def test_record_get_round_trip(store):
    sent = make_record(tz=timezone(timedelta(hours=5, minutes=30)))
    await store.record(sent)
    pending = await store.get(sent["id"])  # may still be in the outbox, may be flushed already
    assert_same_record(pending, sent)
    await flushed(store)
    stored = await store.get(sent["id"])
    assert_same_record(stored, sent)
    assert stored == pending  # one shape whether it came from the outbox or the database
    assert stored["created_at"] == "2025-03-01T12:00:00.123456+00:00"


async def test_get_unknown_id(store):
    assert await store.get("no-such-record") is None


async def test_same_id_twice_is_one_row(store):
    first = make_record(1)
    await store.record(first)
    assert await store.flush() == 1
    second = make_record(2, id=first["id"], result={"rewards": [0.0]})
    await store.record(second)  # already in the database: the insert skips it
    assert await store.flush() == 0
    assert store.outbox_depth() == 0
    records, _ = await store.list()
    assert [r["id"] for r in records] == [first["id"]]
    assert_same_record(records[0], first)


async def _listed_within(store, seconds: float) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        records, _ = await store.list()
        if records or asyncio.get_running_loop().time() > deadline:
            return records
        await asyncio.sleep(0.025)


async def test_background_flusher_delivers_within_the_interval(db_url, outbox_path):
    store = await HistoryStore.open(db_url, outbox_path, flush_interval_s=0.2)
    try:
        sent = make_record()
        await store.record(sent)
        assert (await store.get(sent["id"]))["id"] == sent["id"]  # readable at once, from the outbox
        records = await _listed_within(store, 5.0)
        assert [r["id"] for r in records] == [sent["id"]]
        assert store.outbox_depth() == 0
    finally:
        await store.close()


async def test_a_full_batch_wakes_the_flusher_and_a_single_record_does_not(db_url, outbox_path):
    # A drain costs milliseconds whatever its size: records wait for the interval, unless a full
    # batch of them is waiting.
    store = await HistoryStore.open(db_url, outbox_path, flush_interval_s=3600, flush_batch=2)
    try:
        first, second = make_record(1), make_record(2)
        await store.record(first)
        assert await _listed_within(store, 0.5) == [] and store.outbox_depth() == 1
        await store.record(second)
        records = await _listed_within(store, 5.0)
        for _ in range(100):  # both arrive in one drain; the list may be read between insert and delete
            if store.outbox_depth() == 0:
                break
            await asyncio.sleep(0.02)
        records, _ = await store.list()
        assert sorted(r["id"] for r in records) == sorted([first["id"], second["id"]])
        assert store.outbox_depth() == 0
    finally:
        await store.close()


async def test_close_flushes_what_is_waiting(db_url, tmp_path):
    store = await HistoryStore.open(db_url, tmp_path / "a" / "outbox.db", flush_interval_s=3600)
    sent = [make_record(n) for n in range(3)]
    for record in sent:
        await store.record(record)
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.record(make_record())
    reader = await HistoryStore.open(db_url, tmp_path / "b" / "outbox.db")  # another, empty outbox
    try:
        records, _ = await reader.list()
        assert sorted(r["id"] for r in records) == sorted(r["id"] for r in sent)
    finally:
        await reader.close()


def _seven_records() -> list[dict]:
    """Seven records with two sharing one created_at across the first page boundary (limit 3),
    written in different zones, spread over two prompt hashes and runs."""
    zones = [timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-7))]
    seconds = [0, 1, 2, 3, 3, 4, 5]
    return [
        make_record(
            s,
            id=f"r{i}",
            tz=zones[i % 3],
            prompt_hash="ph-a" if i % 2 == 0 else "ph-b",
            run_id=None if i == 6 else ("run-x" if i < 4 else "run-y"),
        )
        for i, s in enumerate(seconds)
    ]


def _newest_first(records: list[dict]) -> list[str]:
    return [r["id"] for r in sorted(records, key=lambda r: (r["step"], r["id"]), reverse=True)]


async def _all_pages(store, limit, **filters) -> tuple[list[str], list[int]]:
    ids, sizes, cursor = [], [], None
    while True:
        page, cursor = await store.list(limit=limit, cursor=cursor, **filters)
        ids += [r["id"] for r in page]
        sizes.append(len(page))
        if cursor is None:
            return ids, sizes
        assert isinstance(cursor, str) and cursor.isascii() and " " not in cursor


async def test_list_newest_first_filters_and_pages(store):
    sent = _seven_records()
    for record in sent:
        await store.record(record)
    await flushed(store)

    everything, next_cursor = await store.list()
    assert [r["id"] for r in everything] == _newest_first(sent) == ["r6", "r5", "r4", "r3", "r2", "r1", "r0"]
    assert next_cursor is None
    by_id = {r["id"]: r for r in sent}
    for got in everything:
        assert_same_record(got, by_id[got["id"]])

    ids, sizes = await _all_pages(store, 3)
    assert ids == _newest_first(sent) and sizes == [3, 3, 1]  # nothing missing, nothing twice

    a = [r for r in sent if r["prompt_hash"] == "ph-a"]
    ids, sizes = await _all_pages(store, 2, prompt_hash="ph-a")
    assert ids == _newest_first(a) and sizes == [2, 2]  # a full last page: no cursor after it

    x = [r for r in sent if r["run_id"] == "run-x"]
    ids, _ = await _all_pages(store, 1, run_id="run-x")
    assert ids == _newest_first(x)

    both = [r for r in sent if r["run_id"] == "run-y" and r["prompt_hash"] == "ph-b"]
    page, cursor = await store.list(prompt_hash="ph-b", run_id="run-y")
    assert [r["id"] for r in page] == _newest_first(both) == ["r5"] and cursor is None

    assert await store.list(prompt_hash="nothing-here") == ([], None)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor!",
        _b64("not json"),
        _b64('{"created_at": "2025-01-01T00:00:00+00:00"}'),
        _b64("[1, 2]"),
        _b64('["2025-01-01T00:00:00", "r1"]'),  # no timezone
        _b64('["yesterday", "r1"]'),
        _b64('["2025-01-01T00:00:00+00:00", "r1", "extra"]'),
    ],
)
async def test_malformed_cursor(store, cursor):
    await store.record(make_record())
    with pytest.raises(ValueError, match="cursor"):
        await store.list(cursor=cursor)


async def test_limit_must_be_positive(store):
    with pytest.raises(ValueError, match="limit"):
        await store.list(limit=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": ""}, "id"),
        ({"id": 7}, "id"),
        ({"created_at": "2025-03-01T12:00:00"}, "timezone"),
        ({"created_at": "last tuesday"}, "created_at"),
        ({"prompt_hash": "a\x00b"}, "NUL"),
        ({"run_id": "\ud800"}, "Unicode"),
        ({"step": True}, "step"),
        ({"step": 2**63}, "step"),
        ({"request": ["not", "a", "dict"]}, "request"),
        ({"result": {"p_yes": float("nan")}}, "JSON"),
        ({"result": {"when": object()}}, "JSON"),
        ({"surprise": 1}, "unknown"),
        ({"judge_model": None}, "judge_model"),
    ],
)
async def test_malformed_record_is_refused_before_the_outbox(tmp_path, dead_url, change, message):
    store = await HistoryStore.open(dead_url, tmp_path / "outbox.db")
    try:
        with pytest.raises(ValueError, match=message):
            await store.record(make_record(**change))
        missing = make_record()
        del missing["result"]
        with pytest.raises(ValueError, match="missing"):
            await store.record(missing)
        assert store.outbox_depth() == 0
        optional = make_record()
        for key in ("run_id", "step", "group_id"):
            del optional[key]
        await store.record(optional)  # the optional fields may be left out
        assert store.outbox_depth() == 1
    finally:
        await store.close()
