"""Alembic, driven from code: no alembic.ini, no CLI. The migration scripts live in
``migrations/`` next to this file (shipped as package data) and run on a connection we hand to
``env.py`` through ``Config.attributes``, inside ``AsyncConnection.run_sync``."""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Alembic keeps the running migration context in module globals, and run_sync interleaves
# upgrades on one event loop (a store's and an ``upgrade()`` call, or two stores), which would
# clobber each other: upgrades take turns per loop. Across processes, env.py's lock takes over.
_loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the scripts define: what ``alembic_version`` holds after ``upgrade``."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade_sync(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def upgrade_engine(engine: AsyncEngine) -> None:
    """``alembic upgrade head`` in one transaction (DDL is transactional on PostgreSQL)."""
    lock = _loop_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock, engine.begin() as connection:
        await connection.run_sync(_upgrade_sync)


async def upgrade(database_url: str) -> None:
    """Bring the database at ``database_url`` (plain or async URL) to the newest schema."""
    engine = make_engine(database_url)
    try:
        await upgrade_engine(engine)
    finally:
        await engine.dispose()


async def current_revision(database_url: str) -> str | None:
    """The revision the database at ``database_url`` is at (None: never migrated)."""
    from alembic.migration import MigrationContext

    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()


async def wait_for_head(database_url: str, timeout_s: float, interval_s: float = 2.0, on_wait=None) -> str | None:
    """Poll until the database is at ``head_revision()``, for at most ``timeout_s`` seconds: what a
    replica's init container does while the migration Job runs. A revision this code does not
    know was written by a newer release (this replica is a rollback): that counts as ready, since
    migrations only add to the schema. Returns None when ready, else why not (the last revision
    seen, or the last connection error)."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    known = {rev.revision for rev in script.walk_revisions()}
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            revision = await current_revision(database_url)
            if revision == head or (revision is not None and revision not in known):
                reason = None  # at head, or newer than this code (a rollback): served as is
            else:
                reason = f"the database is at revision {revision or 'none'}, not {head}"
        except Exception as exc:  # noqa: BLE001 - unreachable for now: wait and say why
            reason = f"database unreachable: {type(exc).__name__}: {exc}"
        if reason is None:
            return None
        if asyncio.get_running_loop().time() + interval_s > deadline:
            return reason
        if on_wait is not None:
            on_wait(reason)
        await asyncio.sleep(interval_s)


async def upgrade_when_reachable(database_url: str, timeout_s: float, interval_s: float = 2.0, on_wait=None) -> None:
    """``upgrade`` retried while the database cannot be reached (a Job that starts before its
    database), for at most ``timeout_s`` seconds; the last error is raised after that. Errors
    of the migration itself are raised at once."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await upgrade(database_url)
            return
        except (OSError, asyncio.TimeoutError, OperationalError, InterfaceError) as exc:
            if asyncio.get_running_loop().time() + interval_s > deadline:
                raise
            if on_wait is not None:
                on_wait(f"database unreachable: {type(exc).__name__}: {exc}")
            await asyncio.sleep(interval_s)
