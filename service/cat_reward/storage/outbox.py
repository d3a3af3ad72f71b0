"""The local outbox: records waiting for the database, in a stdlib SQLite file.

Synchronous by design (the store calls it through ``asyncio.to_thread``): one connection shared
by worker threads behind a lock. WAL with ``synchronous=FULL`` makes every committed insert
survive a crash or power loss before ``record()`` returns; records that arrive together are
committed together, one fsync for the lot. Rows are keyed by record id, so a second record with
the same id is dropped here, and ordered by ``seq``, so they leave in order. A row keeps the
record's ``request`` and ``result`` JSON in columns of their own, so that they go to the database
as the text they are; rows written before those columns existed hold the whole record in
``payload`` and NULL there.
Several processes may share the file (service workers): SQLite locks it, the database insert is
idempotent, and each process re-reads the depth when it drains.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class Outbox:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, each insert is its own durable transaction.
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL,"
            " request TEXT, result TEXT)"
        )
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(outbox)")}
        for column in ("request", "result"):
            if column not in columns:  # an outbox file from before the split
                try:
                    self._conn.execute(f"ALTER TABLE outbox ADD COLUMN {column} TEXT")
                except sqlite3.OperationalError as exc:  # another worker added it first
                    if "duplicate column" not in str(exc):
                        raise
        self.depth = self._count()

    def _count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def add_many(self, rows: list[tuple[str, str, str, str]]) -> list[bool]:
        """Commit records given as (id, payload, request, result), in one transaction; for each,
        False when a record with its id is already waiting (or came earlier in ``rows``)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                added = [
                    self._conn.execute(
                        "INSERT OR IGNORE INTO outbox (id, payload, request, result) VALUES (?, ?, ?, ?)", row
                    ).rowcount
                    == 1
                    for row in rows
                ]
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self.depth += sum(added)
            return added

    def peek(self, limit: int) -> list[tuple[int, str, str | None, str | None]]:
        """The oldest ``limit`` waiting records as (seq, payload, request, result)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, payload, request, result FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            if len(rows) < limit:  # that is the whole outbox (another process may have emptied it)
                self.depth = len(rows)
            return rows

    def get(self, record_id: str) -> tuple[str, str | None, str | None] | None:
        """(payload, request, result) of a waiting record, or None."""
        with self._lock:
            return self._conn.execute(
                "SELECT payload, request, result FROM outbox WHERE id = ?", (record_id,)
            ).fetchone()

    def remove(self, seqs: list[int]) -> None:
        """Forget records the database now holds. The depth is recounted here rather than
        decremented, so it stays right even if another process shares the file."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
                depth = self._count()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self.depth = depth

    def close(self) -> None:
        with self._lock:
            self._conn.close()
