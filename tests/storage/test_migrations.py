"""Alembic migrations: open() brings an empty database to head, and head matches schema.py."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.util import CommandError
from alembic.migration import MigrationContext

from cat_reward.storage import HistoryStore, upgrade
from cat_reward.storage.engine import make_engine
from cat_reward.storage.migrate import head_revision
from cat_reward.storage.schema import metadata

from .conftest import make_record

pytestmark = pytest.mark.anyio


async def inspect(url: str) -> dict:
    """Tables, reward_records' indexes, the alembic revision, and the differences alembic's
    autogenerate finds between the database and schema.py."""

    def look(conn) -> dict:
        inspector = sa.inspect(conn)
        tables = set(inspector.get_table_names())
        facts = {"tables": tables, "indexes": {}, "version": None, "drift": None}
        if "reward_records" in tables:
            facts["indexes"] = {i["name"]: i["column_names"] for i in inspector.get_indexes("reward_records")}
            facts["drift"] = compare_metadata(MigrationContext.configure(conn), metadata)
        if "alembic_version" in tables:
            facts["version"] = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        return facts

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(look)
    finally:
        await engine.dispose()


async def test_open_migrates_an_empty_database(db_url, outbox_path):
    assert (await inspect(db_url))["tables"] == set()
    store = await HistoryStore.open(db_url, outbox_path)
    await store.close()
    facts = await inspect(db_url)
    assert facts["tables"] == {"reward_records", "alembic_version"}
    assert facts["version"] == head_revision() == "0002"
    assert facts["indexes"] == {
        "ix_reward_records_created_at": ["created_at", "id"],
        "ix_reward_records_prompt_hash": ["prompt_hash", "created_at", "id"],
        "ix_reward_records_run_id": ["run_id", "created_at", "id"],
        "ix_reward_records_run_step": ["run_id", "step", "created_at", "id"],
    }
    assert facts["drift"] == []  # the migration builds exactly the table the store queries


async def test_upgrade_twice_is_harmless(db_url):
    await upgrade(db_url)
    await upgrade(db_url)
    assert (await inspect(db_url))["version"] == head_revision()


async def test_concurrent_upgrades_in_one_process(db_url, tmp_path):
    """Two stores and an upgrade() on one event loop: alembic's global context is not shared."""
    stores = await asyncio.gather(
        HistoryStore.open(db_url, tmp_path / "one.db"), HistoryStore.open(db_url, tmp_path / "two.db"), upgrade(db_url)
    )
    for store in stores[:2]:
        await store.close()
    assert (await inspect(db_url))["version"] == head_revision()


async def test_concurrent_upgrades_across_processes_on_postgresql(pg_url):
    """Service processes starting together on an empty database all succeed (advisory lock).
    The processes wait for a common start time, so that their migrations really overlap."""
    code = (
        "import asyncio, sys, time; from cat_reward.storage import upgrade; "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); asyncio.run(upgrade(sys.argv[1]))"
    )
    start_at = str(time.time() + 1.5)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, pg_url, start_at, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(6)
    ]
    errors = [(await proc.communicate())[1].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 6, errors
    assert (await inspect(pg_url))["version"] == head_revision()


async def test_without_auto_migrate_nothing_is_created(db_url, outbox_path):
    store = await HistoryStore.open(db_url, outbox_path, auto_migrate=False)
    try:
        await store.record(make_record())
        assert await store.flush() == 0  # no table yet: the record waits
        assert store.outbox_depth() == 1
        assert (await inspect(db_url))["tables"] == set()
        await upgrade(db_url)
        assert await store.flush() == 1
        assert store.outbox_depth() == 0
    finally:
        await store.close()


async def test_schema_from_a_newer_release_does_not_stop_recording(db_url, outbox_path):
    """A rolled-back deploy meets a revision it does not know: open() and record() still work,
    the records wait, and flush() says why."""
    await upgrade(db_url)
    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    finally:
        await engine.dispose()
    store = await HistoryStore.open(db_url, outbox_path)
    try:
        await store.record(make_record())
        with pytest.raises(CommandError, match="9999_from_the_future"):
            await store.flush()
        assert store.outbox_depth() == 1
    finally:
        await store.close()
    assert (await inspect(db_url))["version"] == "9999_from_the_future"


async def test_a_database_of_the_first_release_is_brought_to_head_with_its_records(db_url, outbox_path):
    """0001 -> 0002 on a database that already holds records: they stay, the new index appears."""
    from alembic import command

    from cat_reward.storage.migrate import alembic_config

    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0001"))
    finally:
        await engine.dispose()
    facts = await inspect(db_url)
    assert facts["version"] == "0001" and "ix_reward_records_run_step" not in facts["indexes"]
    store = await HistoryStore.open(db_url, outbox_path, auto_migrate=False)
    try:
        await store.record(make_record(0, run_id="old-run", step=3))
        assert await store.flush() == 1
    finally:
        await store.close()
    store = await HistoryStore.open(db_url, outbox_path)  # a new release starts: it migrates
    try:
        records, _ = await store.list(run_id="old-run", step=3)
        assert [r["step"] for r in records] == [3]
    finally:
        await store.close()
    facts = await inspect(db_url)
    assert facts["version"] == "0002" and facts["indexes"]["ix_reward_records_run_step"] == ["run_id", "step", "created_at", "id"]
    assert facts["drift"] == []

