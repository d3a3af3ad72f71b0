"""The outbox keeps records while the database is away, across restarts and outages, and the
store delivers them once it answers again."""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from cat_reward.storage import HistoryStore, StoreUnavailable
from cat_reward.storage import store as store_module
from cat_reward.storage.engine import make_engine
from cat_reward.storage.migrate import head_revision

from .conftest import assert_same_record, make_record
from .proxy import TcpProxy

pytestmark = pytest.mark.anyio


async def timed_record(store: HistoryStore, record: dict) -> float:
    started = time.perf_counter()
    await store.record(record)
    return time.perf_counter() - started


async def test_outbox_survives_restart(db_url, dead_url, outbox_path):
    started = time.perf_counter()
    down = await HistoryStore.open(dead_url, outbox_path)  # must not fail: rewards keep flowing
    assert time.perf_counter() - started < 3
    assert outbox_path.parent.is_dir()
    sent = [make_record(n) for n in range(3)]
    for record in sent:
        assert await timed_record(down, record) < 1
    await down.record(make_record(9, id=sent[0]["id"]))  # same id while waiting: dropped
    assert down.outbox_depth() == 3
    assert await down.flush() == 0
    with pytest.raises(StoreUnavailable):
        await down.list()
    assert_same_record(await down.get(sent[1]["id"]), sent[1])  # served from the outbox
    with pytest.raises(StoreUnavailable):
        await down.get("not-recorded")  # cannot say "absent" without the database
    await down.close()  # its last flush fails quietly
    assert outbox_path.is_file()

    up = await HistoryStore.open(db_url, outbox_path)
    try:
        assert up.outbox_depth() in (3, 0)  # read from the file (the flusher may already be at it)
        await up.flush()
        assert up.outbox_depth() == 0
        records, _ = await up.list()
        assert sorted(r["id"] for r in records) == sorted(r["id"] for r in sent)
        by_id = {r["id"]: r for r in sent}
        for got in records:
            assert_same_record(got, by_id[got["id"]])  # the first of the two sent[0] copies won
    finally:
        await up.close()


@pytest.fixture
async def pg_proxy(pg_url):
    """(proxy, URL of the fresh test database through the proxy)."""
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    await proxy.close()


async def test_database_cut_mid_run(pg_proxy, outbox_path):
    proxy, url = pg_proxy
    store = await HistoryStore.open(url, outbox_path)
    try:
        before = [make_record(n) for n in range(2)]
        for record in before:
            await store.record(record)
        await store.flush()
        assert len((await store.list())[0]) == 2

        await proxy.cut()
        during = [make_record(10 + n) for n in range(5)]
        for i, record in enumerate(during):
            assert await timed_record(store, record) < 1
            assert store.outbox_depth() == i + 1
        with pytest.raises(StoreUnavailable):
            await store.list()
        assert await store.flush() == 0
        assert store.outbox_depth() == 5
        assert_same_record(await store.get(during[3]["id"]), during[3])

        await proxy.restore()
        await store.flush()
        assert store.outbox_depth() == 0
        records, _ = await store.list(limit=100)
        assert sorted(r["id"] for r in records) == sorted(r["id"] for r in before + during)

        await proxy.cut()  # a restart while the store is idle: its pooled connections are dead
        await proxy.restore()
        assert len((await store.list(limit=100))[0]) == 7  # they are replaced, not used
    finally:
        await store.close()


async def test_database_down_at_open_is_migrated_and_filled_later(pg_proxy, outbox_path, monkeypatch):
    monkeypatch.setattr(store_module, "BACKOFF_MAX_S", 0.2)
    proxy, url = pg_proxy
    await proxy.cut()  # the fresh database has no tables, and cannot be reached either
    started = time.perf_counter()
    store = await HistoryStore.open(url, outbox_path, flush_interval_s=0.05)
    try:
        assert time.perf_counter() - started < 3
        sent = [make_record(n) for n in range(4)]
        for record in sent:
            assert await timed_record(store, record) < 1
        await asyncio.sleep(0.3)  # the flusher fails meanwhile
        assert store.outbox_depth() == 4

        await proxy.restore()  # no flush() call: the background task migrates and delivers
        deadline = time.monotonic() + 10
        while store.outbox_depth() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert store.outbox_depth() == 0
        records, _ = await store.list()
        assert sorted(r["id"] for r in records) == sorted(r["id"] for r in sent)
    finally:
        await store.close()
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one()
        assert version == head_revision()
    finally:
        await engine.dispose()


async def test_processes_sharing_one_outbox(db_url, dead_url, outbox_path):
    """Service workers started with one data dir share the outbox file. Here one worker cannot
    reach the database: another delivers its records, and its depth follows once it looks."""
    cut_off = await HistoryStore.open(dead_url, outbox_path, auto_migrate=False)
    live = await HistoryStore.open(db_url, outbox_path)
    try:
        sent = [make_record(n) for n in range(3)]
        for record in sent:
            await cut_off.record(record)
        await live.record(make_record(id=sent[1]["id"]))  # already waiting: dropped
        await live.record(extra := make_record(7))
        assert cut_off.outbox_depth() == 3
        await live.flush()
        assert live.outbox_depth() == 0
        records, _ = await live.list()
        assert sorted(r["id"] for r in records) == sorted(r["id"] for r in [*sent, extra])
        assert await cut_off.flush() == 0  # nothing left for it: no database needed to see that
        assert cut_off.outbox_depth() == 0
    finally:
        await cut_off.close()
        await live.close()
