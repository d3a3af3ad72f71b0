"""The outbox commits concurrent records together, keeps a record's JSON parts as written, and
still reads an outbox file from before the JSON parts had columns of their own."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest
import sqlalchemy as sa

from cat_reward.storage import HistoryStore
from cat_reward.storage.engine import make_engine
from cat_reward.storage.outbox import Outbox

from .conftest import assert_same_record, make_record

pytestmark = pytest.mark.anyio


def count_commits(monkeypatch) -> list[int]:
    sizes: list[int] = []
    real = Outbox.add_many

    def add_many(self, rows):
        sizes.append(len(rows))
        return real(self, rows)

    monkeypatch.setattr(Outbox, "add_many", add_many)
    return sizes


async def test_concurrent_records_share_transactions(db_url, outbox_path, monkeypatch):
    sizes = count_commits(monkeypatch)
    store = await HistoryStore.open(db_url, outbox_path, flush_interval_s=3600)
    try:
        sent = [make_record(i) for i in range(40)]
        await asyncio.gather(*(store.record(r) for r in sent))
        assert sum(sizes) == 40
        assert len(sizes) < 40, sizes  # 40 callers at once: batched, not one commit each
        await store.flush()
        for record in sent:
            assert_same_record(await store.get(record["id"]), record)
    finally:
        await store.close()


async def test_a_bad_record_fails_only_its_own_caller(tmp_path, dead_url, monkeypatch):
    sizes = count_commits(monkeypatch)
    store = await HistoryStore.open(dead_url, tmp_path / "outbox.db")
    try:
        good = [make_record(i) for i in range(5)]
        bad = make_record(9, result={"p_yes": float("nan")})
        outcomes = await asyncio.gather(*(store.record(r) for r in [*good[:2], bad, *good[2:]]), return_exceptions=True)
        assert [type(o).__name__ for o in outcomes] == ["NoneType"] * 2 + ["ValueError"] + ["NoneType"] * 3
        assert "JSON" in str(outcomes[2])
        assert sizes == [5]  # the five good ones in one commit; the bad one never reached it
        assert store.outbox_depth() == 5
        for record in good:  # the database is down: read back from the outbox
            assert_same_record(await store.get(record["id"]), record)
    finally:
        await store.close()


async def test_json_parts_reach_the_database_as_written(tmp_path, outbox_path):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    store = await HistoryStore.open(url, outbox_path, flush_interval_s=3600)
    record = make_record(3, request={"z": 1, "a": [1, 2], "text": "é\u2028"}, result={"rewards": [0.5], "k": None})
    try:
        await store.record(record)
        assert await store.flush() == 1
    finally:
        await store.close()
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            raw = (await conn.execute(sa.text("SELECT request, result, typeof(request) FROM reward_records"))).one()
            mode = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar_one()
    finally:
        await engine.dispose()
    # Key order kept (not re-sorted, not re-parsed), stored as text, the compact form; non-ASCII
    # characters may be written as themselves (UTF-8) or escaped, and read back the same.
    assert raw[0] in ('{"z":1,"a":[1,2],"text":"\u00e9\u2028"}', '{"z":1,"a":[1,2],"text":"\\u00e9\\u2028"}')
    assert json.loads(raw[0]) == {"z": 1, "a": [1, 2], "text": "\u00e9\u2028"}
    assert json.loads(raw[1]) == {"rewards": [0.5], "k": None}
    assert raw[2] == "text"
    assert mode == "wal"  # the SQLite history commits through a write-ahead log


async def test_an_outbox_from_before_the_split_is_still_delivered(db_url, outbox_path):
    # An outbox file as the previous release left it: the whole record in payload.
    old = make_record(4)
    canonical = {**old, "created_at": "2025-03-01T12:00:04.123456+00:00"}
    outbox_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(outbox_path)
    conn.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL)"
    )
    conn.execute("INSERT INTO outbox (id, payload) VALUES (?, ?)", (old["id"], json.dumps(canonical)))
    conn.commit()
    conn.close()

    store = await HistoryStore.open(db_url, outbox_path, flush_interval_s=3600)
    try:
        assert_same_record(await store.get(old["id"]), old)  # read from the outbox, old form
        new = make_record(5)
        await store.record(new)  # written in the new form beside it
        await store.flush()
        assert store.outbox_depth() == 0
        records, _ = await store.list()
        assert sorted(r["id"] for r in records) == sorted([old["id"], new["id"]])
        for record in records:
            assert_same_record(record, old if record["id"] == old["id"] else new)
    finally:
        await store.close()
