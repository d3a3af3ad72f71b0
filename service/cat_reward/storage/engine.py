"""Database URLs and the async engine, configured once for the store and the migrations."""

from __future__ import annotations

import json

import orjson
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# The async driver we pick for each plain SQLAlchemy dialect name.
_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}

# A reachable-but-silent server must not hang a flush or a read for asyncpg's defaults
# (60 s to connect, no query limit): the flusher retries anyway, readers want a quick 503.
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0


def to_async_url(url: str) -> str:
    """``sqlite:///p`` -> ``sqlite+aiosqlite:///p``, ``postgres(ql)://...`` -> ``postgresql+asyncpg://...``.

    Settings hold plain URLs; the async driver is our choice. A URL that names a driver already
    keeps it. Only SQLite and PostgreSQL are accepted: they are the two the migrations are
    tested on. Error messages name the scheme only, never the URL (it may hold a password).
    """
    if not isinstance(url, str):
        raise ValueError(f"database URL must be a string, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise ValueError("not a database URL: expected e.g. sqlite:///path/history.db or postgresql://user@host/db")
    dialect, _, driver = scheme.partition("+")
    dialect = dialect.lower()
    if dialect == "postgres":  # the libpq / Heroku spelling, which SQLAlchemy no longer accepts
        dialect = "postgresql"
    if dialect not in _ASYNC_DRIVERS:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///path or postgresql://user@host/db"
        )
    return f"{dialect}+{driver or _ASYNC_DRIVERS[dialect]}://{rest}"


# What orjson writes as the standard library would (apart from spacing and non-ASCII characters,
# which it writes as UTF-8): anything else (a dataclass, a datetime, a subclass of a JSON type, an
# integer past 64 bits, a lone surrogate) goes to the standard library, which accepts or refuses it
# as it always did.
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _all_finite(value) -> bool:
    """No NaN or infinity anywhere in ``value`` (orjson would write them as null)."""
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            push(item.values())
        elif kind is list or kind is tuple:
            push(item)
        elif kind is float and item - item != 0.0:  # inf - inf and nan - nan are nan
            return False
    return True


def dumps(value) -> str:
    """JSON as stored everywhere (outbox and database): strict, so that NaN or Infinity, which
    PostgreSQL's json type rejects, fail in ``record()`` instead of blocking the outbox later.
    Written by orjson (a group's record is tens of KB: about 0.12 ms against 0.37 ms with the
    standard library, NaN check included); what orjson does not take is written as before."""
    try:
        data = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    if not _all_finite(value):
        json.dumps(value, allow_nan=False)  # raises ValueError, as it always did
    return data.decode()


class RawJSON(str):
    """JSON text that ``dumps`` wrote already (the outbox keeps a record's JSON parts as text):
    the engine sends it as it is instead of parsing and writing it again."""


def _serialize(value) -> str:
    return str(value) if type(value) is RawJSON else dumps(value)


def _sqlite_wal(dbapi_connection, _record) -> None:
    # WAL: a commit is one fsync of the log instead of a rollback journal created, synced and
    # deleted. synchronous=FULL keeps a committed batch on disk across power loss, which the
    # flusher relies on when it then deletes the batch from the outbox.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def make_engine(database_url: str) -> AsyncEngine:
    """The async engine for a plain or async URL. ``pool_pre_ping`` replaces connections that died
    while the database was away, so the first query after an outage does not fail."""
    url = to_async_url(database_url)
    connect_args: dict = {}
    if url.startswith("postgresql+asyncpg"):
        connect_args = {"timeout": CONNECT_TIMEOUT_S, "command_timeout": COMMAND_TIMEOUT_S}
    engine = create_async_engine(
        url, pool_pre_ping=True, json_serializer=_serialize, json_deserializer=json.loads, connect_args=connect_args
    )
    if engine.dialect.name == "sqlite":  # an in-memory database answers "memory" and stays so
        event.listen(engine.sync_engine, "connect", _sqlite_wal)
    return engine
