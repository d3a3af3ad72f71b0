"""Fixtures of the history-store tests: a database per test (a SQLite file, or a fresh PostgreSQL
database created and dropped around the test), record factories, a closed port."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from cat_reward.storage import HistoryStore
from cat_reward.storage.records import FIELDS

PG_URL_ENV = "CAT_TEST_POSTGRES_URL"
# An admin URL: tests create and drop their own databases on this server.
PG_ADMIN_URL = os.environ.get(PG_URL_ENV, "postgresql://postgres@127.0.0.1:5432/postgres")
BASE_TIME = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


@asynccontextmanager
async def fresh_pg_database():
    """A new empty database for one test, dropped afterwards: tests stay independent, and two
    test sessions on one server never meet. Skips when no server answers at the default URL
    (an explicit CAT_TEST_POSTGRES_URL must answer)."""
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        if PG_URL_ENV in os.environ:
            raise
        pytest.skip(f"PostgreSQL not reachable at the default URL ({exc}); set {PG_URL_ENV}")
    name = f"cat_reward_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request, tmp_path):
    """A plain SQLAlchemy URL of an empty database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.db'}"
    else:
        async with fresh_pg_database() as url:
            yield url


@pytest.fixture
async def pg_url():
    async with fresh_pg_database() as url:
        yield url


@pytest.fixture
def outbox_path(tmp_path):
    return tmp_path / "spool" / "outbox.sqlite3"  # the folder does not exist yet: open creates it


@pytest.fixture
async def store(db_url, outbox_path):
    # A long interval: the flusher drains only when a full batch (500) waits, so flush() counts are
    # deterministic.
    s = await HistoryStore.open(db_url, outbox_path, flush_interval_s=3600)
    yield s
    await s.close()


@pytest.fixture
def dead_url():
    """A PostgreSQL URL at a port nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/nowhere"


def make_record(n: int = 0, *, tz: timezone = timezone.utc, **fields) -> dict:
    """A record as the app builds it, ``n`` seconds after BASE_TIME, written in zone ``tz``."""
    record = {
        "id": f"rec-{uuid.uuid4().hex}",
        "created_at": (BASE_TIME + timedelta(seconds=n)).astimezone(tz).isoformat(),
        "prompt_hash": "ph-a",
        "mode": "rubric",
        "run_id": "run-1",
        "step": n,
        "group_id": f"group-{n}",
        "anchor_model": "anchor-model",
        "judge_model": "judge-model",
        "prompt_version": "cat-v1+1a2b3c4d",
        "request": {
            "prompt": [{"role": "user", "content": "What is 12 + 30? (ü, 中文, 🎲, \"quotes\", \\ backslash)"}],
            "rollouts": ["12 + 30 = 42, so \\boxed{42}.", "It is \\boxed{52}."],
            "options": {"aggregator": "synthesis", "seed": 7, "synthesis": {"temperature": 0.7}},
            "metadata": {"tags": ["a", "b"], "nested": {"x": [1, 2.5, True, None]}},
        },
        "result": {
            "rewards": [0.8, None],
            "mode": "rubric",
            "details": [{"index": 0, "reward": 0.8, "verdicts": [{"criterion_id": "c1", "met": True, "p_yes": 0.91}]},
                        {"index": 1, "reward": None, "error": "unparseable verdict"}],  # fmt: skip
            "flags": [],
            "usage": {"llm_calls": 26, "latency_ms": {"total": 1234.567}},
        },
    }
    record.update(fields)
    return record


def assert_same_record(got: dict, sent: dict) -> None:
    """``got`` is ``sent`` as the store returns it: all fields, the same values, and created_at
    the same instant as a timezone-aware UTC ISO string."""
    assert set(got) == set(FIELDS)
    for key in FIELDS:
        if key != "created_at":
            assert got[key] == sent.get(key), key
    stamp = datetime.fromisoformat(got["created_at"])
    assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
    assert stamp == datetime.fromisoformat(sent["created_at"])
