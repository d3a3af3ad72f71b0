"""The files of ``cat-reward score``: results and failures, append-only, one line per group key.

    OUT                    one JSON line per scored group (``key``, ``id``, ``line``, rewards, ...)
    OUT.failures.jsonl     groups that failed after their retries, and rows that were not groups

Resuming: on open, every complete line of OUT is a group already done; a torn last line (a
process killed mid-write) is cut off. A line is written whole with one ``write`` and flushed at
once, so a killed process loses only the groups in flight; the file is also fsynced at most
every ``fsync_interval_s`` and at close, so a machine that loses power loses at most that much,
and those groups are scored again on the next run (never written twice: a key in OUT is
skipped). A lock file keeps a second process off the same OUT.

The failures file is a log while the run goes on and is rewritten at the end with what is still
failed: group failures of earlier runs that were not retried or failed again, and this run's bad
rows (which every run reads again, so they are not carried over).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path


class StoreError(Exception):
    """The output cannot be used (locked by another process, not ours, unreadable)."""


def failures_path_for(out: Path) -> Path:
    return out.with_name(out.name + ".failures.jsonl")


def _dump(entry: dict) -> bytes:
    return (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def read_lines(path: Path, *, repair: bool = False) -> list[dict]:
    """The complete JSON lines of ``path``. A torn last line (no newline) is ignored, and cut off
    the file when ``repair``; any other unreadable line is an error (the file is not ours)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data) and repair:
        with path.open("r+b") as handle:
            handle.truncate(end)
    entries = []
    for number, raw in enumerate(data[:end].splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            raise StoreError(f"{path}: line {number} is not JSON; this is not an output of cat-reward score") from None
        if not isinstance(entry, dict):
            raise StoreError(f"{path}: line {number} is not a JSON object")
        entries.append(entry)
    return entries


class OutputStore:
    def __init__(self, out: Path, failures: Path | None = None, *, fsync_interval_s: float = 1.0) -> None:
        self.out = Path(out)
        self.failures_path = Path(failures) if failures else failures_path_for(self.out)
        self.fsync_interval_s = fsync_interval_s
        self.done: set[str] = set()  # keys with a line in OUT
        self.failed: dict[str, dict] = {}  # key -> failure entry of an earlier run, not done since
        self._lock = None
        self._out = None
        self._failures = None
        self._last_sync = time.monotonic()
        self._bad_rows: list[dict] = []
        self._new_failures: dict[str, dict] = {}

    def open(self) -> OutputStore:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.out.with_name(self.out.name + ".lock")
        self._lock = lock_path.open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise StoreError(f"{self.out} is being written by another process (lock {lock_path})") from None
        try:
            self._load()
        except BaseException:
            self._unlock()
            raise
        self._out = self.out.open("ab", buffering=0)
        self._failures = self.failures_path.open("ab", buffering=0)
        return self

    def _unlock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _load(self) -> None:
        for entry in read_lines(self.out, repair=True):
            key = entry.get("key")
            if not isinstance(key, str):
                raise StoreError(f"{self.out}: a line has no 'key'; this is not an output of cat-reward score")
            self.done.add(key)
        for entry in read_lines(self.failures_path, repair=True):
            key = entry.get("key")
            if entry.get("kind") == "group" and isinstance(key, str) and key not in self.done:
                self.failed[key] = entry

    def write_result(self, entry: dict) -> None:
        key = entry["key"]
        if key in self.done:  # a second answer for a key: never a second line
            return
        self._out.write(_dump(entry))  # unbuffered: one write, in the kernel's hands at once
        self.done.add(key)
        self.failed.pop(key, None)
        self._new_failures.pop(key, None)
        self._maybe_sync()

    def write_failure(self, entry: dict) -> None:
        """A group that failed after its retries (``kind`` "group") or a bad row (``kind`` "bad_row")."""
        self._failures.write(_dump(entry))
        if entry.get("kind") == "group":
            self._new_failures[entry["key"]] = entry
        else:
            self._bad_rows.append(entry)
        self._maybe_sync()

    def _maybe_sync(self) -> None:
        now = time.monotonic()
        if now - self._last_sync >= self.fsync_interval_s:
            self._last_sync = now
            os.fsync(self._out.fileno())
            os.fsync(self._failures.fileno())

    def still_failed(self) -> list[dict]:
        """Group failures not resolved: earlier runs' not retried or failed again, and this run's."""
        merged = {**self.failed, **self._new_failures}
        return [entry for key, entry in merged.items() if key not in self.done]

    @property
    def bad_rows(self) -> list[dict]:
        return list(self._bad_rows)

    def close(self, *, compact: bool = True) -> None:
        """Sync the output; rewrite the failures file with what is still failed (``compact``)."""
        if self._out is not None:
            os.fsync(self._out.fileno())
            self._out.close()
            self._out = None
        if self._failures is not None:
            os.fsync(self._failures.fileno())
            self._failures.close()
            self._failures = None
            if compact:
                entries = sorted(self._bad_rows, key=lambda e: e.get("line") or 0) + self.still_failed()
                tmp = self.failures_path.with_name(self.failures_path.name + ".tmp")
                with tmp.open("wb") as handle:
                    for entry in entries:
                        handle.write(_dump(entry))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.failures_path)
        self._unlock()
