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
