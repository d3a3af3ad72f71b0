"""`cat-reward migrate`: the Kubernetes migration Job's command, and `--wait`, its replicas' init
container. Run as the Job runs it: a separate process configured by CAT_DATABASE_URL."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest
import sqlalchemy as sa

from cat_reward.storage.engine import make_engine
from cat_reward.storage.migrate import current_revision, head_revision

pytestmark = pytest.mark.anyio


async def migrate(url: str, *args: str, timeout_s: float = 60) -> tuple[int, str]:
    env = {**os.environ, "CAT_DATABASE_URL": url, "CAT_LOG_JSON": "false"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cat_reward.cli", "migrate", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    return process.returncode, out.decode()


async def test_wait_fails_until_the_job_has_migrated(db_url):
    code, out = await migrate(db_url, "--wait", "--timeout", "0")
    assert code == 1
    assert f"revision none, not {head_revision()}" in out
    assert await current_revision(db_url) is None  # --wait migrates nothing

    code, out = await migrate(db_url)
    assert code == 0, out
    assert await current_revision(db_url) == head_revision()

    code, out = await migrate(db_url, "--wait", "--timeout", "5")
    assert code == 0, out
    assert "at this code's schema or newer" in out


async def test_wait_accepts_a_newer_schema_for_a_rollback(db_url):
    """A replica rolled back to an older release finds a revision its code does not know."""
    code, out = await migrate(db_url)
    assert code == 0, out
    engine = make_engine(db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    finally:
        await engine.dispose()
    code, out = await migrate(db_url, "--wait", "--timeout", "0")
    assert code == 0, out


async def test_two_jobs_at_once_do_not_race(pg_url):
    """Two migrations started together on an empty PostgreSQL: the advisory lock makes the second
    find the schema at head; both succeed."""
    results = await asyncio.gather(migrate(pg_url), migrate(pg_url), migrate(pg_url, "--wait", "--timeout", "30"))
    assert [code for code, _ in results] == [0, 0, 0], results
    assert await current_revision(pg_url) == head_revision()


async def test_unreachable_database_is_retried_then_named(dead_url):
    started = time.monotonic()
    code, out = await migrate(dead_url, "--timeout", "3")
    assert code == 1
    assert "waiting: database unreachable" in out and "migration failed" in out
    assert time.monotonic() - started < 30


async def test_bad_url_is_a_usage_error():
    code, out = await migrate("mysql://x@127.0.0.1/db")
    assert code == 2
    assert "CAT_DATABASE_URL" in out and "unsupported database URL scheme 'mysql'" in out
