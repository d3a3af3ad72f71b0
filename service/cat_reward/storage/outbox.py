"""The local outbox: records waiting for the database, in a stdlib SQLite file.

Synchronous by design (the store calls it through ``asyncio.to_thread``): one connection shared
by worker threads behind a lock. WAL with ``synchronous=FULL`` makes every committed insert
survive a crash or power loss before ``record()`` returns. Rows are keyed by record id, so a
second record with the same id is dropped here, and ordered by ``seq``, so they leave in order.
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
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL)"
        )
        self.depth = self._count()

    def _count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def add(self, record_id: str, payload: str) -> bool:
        """Commit one record; False when a record with this id is already waiting."""
        with self._lock:
            added = self._conn.execute(
                "INSERT OR IGNORE INTO outbox (id, payload) VALUES (?, ?)", (record_id, payload)
            ).rowcount == 1
            if added:
                self.depth += 1
            return added

    def peek(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` waiting records as (seq, payload)."""
        with self._lock:
            rows = self._conn.execute("SELECT seq, payload FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
            if len(rows) < limit:  # that is the whole outbox (another process may have emptied it)
                self.depth = len(rows)
            return rows

    def get(self, record_id: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT payload FROM outbox WHERE id = ?", (record_id,)).fetchone()
            return row[0] if row else None

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
