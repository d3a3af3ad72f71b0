"""``HistoryStore``: the audit history of rewards, written through a local outbox.

Why an outbox: a reward must never wait for, or fail because of, the history database. So
``record()`` only commits to a local SQLite file and wakes a background task, which moves waiting
records into the database in batches, retrying with backoff while the database is away (also the
first migration, if the database was down at start). Delivery is at least once and the insert
ignores ids already present, so a record lands exactly once even when a flush is repeated.
Reads come from the database (``get`` also sees records still waiting) and raise
``StoreUnavailable`` when it does not answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import RawJSON, make_engine
from .migrate import upgrade_engine
from .outbox import Outbox
from .records import decode_cursor, encode_cursor, format_timestamp, from_row, join, serialize, to_row
from .schema import reward_records

log = logging.getLogger(__name__)

# What "the database does not answer" looks like: SQLAlchemy-wrapped driver errors, refused or
# reset sockets, connect and command timeouts.
DB_ERRORS = (SQLAlchemyError, OSError, asyncio.TimeoutError)

# Waits of the background task between failed attempts: doubling, jittered, capped.
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0


class StoreUnavailable(Exception):
    """The history database cannot be reached, so a read cannot be answered."""


def _check_limit(limit) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("limit must be a positive integer")


def _check_step(step, name: str) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or not -(2**63) <= step < 2**63:
        raise ValueError(f"{name} must be a 64-bit integer")


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _row(payload: str, request: str | None, result: str | None) -> dict:
    """Insert parameters for an outbox row; its JSON parts go to the database as written."""
    if request is None:  # written before the outbox kept the JSON parts apart
        return to_row(json.loads(payload))
    return {**to_row(json.loads(payload)), "request": RawJSON(request), "result": RawJSON(result)}


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        pass


class HistoryStore:
    """Build with ``await HistoryStore.open(...)``; ``await close()`` on shutdown."""

    def __init__(
        self, engine: AsyncEngine, outbox: Outbox, *, auto_migrate: bool, flush_interval_s: float, flush_batch: int
    ):
        self._engine = engine
        self._outbox = outbox
        self._flush_interval_s = flush_interval_s
        self._flush_batch = flush_batch
        self._schema_ready = not auto_migrate
        self._schema_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()  # one drain at a time: the outbox depth stays exact
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._closed = False
        self._db_up: bool | None = None  # last seen state, to log changes rather than every retry
        self._task: asyncio.Task | None = None
        # Group commit: records that arrive while the outbox is busy wait here and go in together.
        self._arrivals: list[tuple[dict, asyncio.Future]] = []
        self._committer: asyncio.Task | None = None
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert = (
            insert(reward_records).on_conflict_do_nothing(index_elements=["id"]).returning(reward_records.c.id)
        )

    @classmethod
    async def open(
        cls,
        database_url: str,
        outbox_path: Path,
        *,
        auto_migrate: bool = True,
        flush_interval_s: float = 1.0,
        flush_batch: int = 500,
    ) -> HistoryStore:
        """Open the outbox, migrate if the database answers, start the flusher. Succeeds while the
        database is unreachable (the flusher migrates and flushes once it answers); raises only
        for a bad URL or arguments, or an outbox file that cannot be opened."""
        if not flush_interval_s > 0:
            raise ValueError("flush_interval_s must be positive")
        if isinstance(flush_batch, bool) or not isinstance(flush_batch, int) or flush_batch < 1:
            raise ValueError("flush_batch must be a positive integer")
        engine = make_engine(database_url)
        try:
            outbox = await asyncio.to_thread(Outbox, Path(outbox_path))
        except BaseException:
            await engine.dispose()
            raise
        store = cls(
            engine, outbox, auto_migrate=auto_migrate, flush_interval_s=flush_interval_s, flush_batch=flush_batch
        )
        if auto_migrate:
            try:
                await store._ensure_schema()
            except DB_ERRORS as exc:
                store._note_db(exc)
            except Exception:  # e.g. a revision from a newer release: keep recording, say it loudly
                log.exception("history database migration failed; records wait in the outbox")
        store._task = asyncio.create_task(store._run(), name="cat-reward history flusher")
        if outbox.depth:
            store._wake.set()
        return store

    # --- writing ------------------------------------------------------------------------

    async def record(self, record: dict) -> None:
        """Commit ``record`` to the outbox (durable when this returns; ``get`` finds it from then
        on). The flusher moves it to the database within ``flush_interval_s``, or at once when a
        full ``flush_batch`` is waiting: a drain costs a few milliseconds of CPU whatever its size
        (3.5 ms on SQLite, 2.2 ms on PostgreSQL, measured), so one drain per record would cost more
        than the record itself at a training step's pace of a few groups a second.
        A record whose id was recorded before is dropped here or by the insert. Raises
        ``ValueError`` for a malformed record, which the database would refuse forever.
        Records from concurrent callers share one outbox transaction."""
        self._check_open()
        future = asyncio.get_running_loop().create_future()
        self._arrivals.append((record, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_arrivals(), name="cat-reward outbox commit")
        if await future and self._outbox.depth >= self._flush_batch:
            self._wake.set()

    async def _commit_arrivals(self) -> None:
        try:
            while self._arrivals:
                batch, self._arrivals = self._arrivals, []
                try:
                    outcomes = await asyncio.to_thread(self._add_many, [record for record, _ in batch])
                except Exception as exc:  # the outbox file itself failed: every caller hears it
                    outcomes = [exc] * len(batch)
                except BaseException:  # cancelled: the finally below answers this batch's callers
                    self._arrivals[:0] = batch
                    raise
                for (_, future), outcome in zip(batch, outcomes):
                    if future.done():  # its caller was cancelled; the commit stands
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._committer = None
            left, self._arrivals = self._arrivals, []
            stopped = RuntimeError("history store stopped while committing; the record may be missing")
            for _, future in left:
                if not future.done():
                    future.set_exception(stopped)

    def _add_many(self, records: list[dict]) -> list[bool | Exception]:
        # In the worker thread: a group of 256 long rollouts is megabytes of JSON to check.
        outcomes: list[bool | Exception] = [False] * len(records)
        rows, where = [], []
        for i, record in enumerate(records):
            try:
                rows.append(serialize(record))
                where.append(i)
            except Exception as exc:  # this record's own fault: only its caller hears of it
                outcomes[i] = exc
        if rows:
            for i, added in zip(where, self._outbox.add_many(rows)):
                outcomes[i] = added
        return outcomes

    async def flush(self) -> int:
        """Move everything waiting into the database now. Returns the rows inserted (ids already
        there do not count); 0 when the database is unreachable, the records stay queued."""
        self._check_open()
        written, _ = await self._drain()
        return written

    def outbox_depth(self) -> int:
        """Records waiting in the outbox."""
        return self._outbox.depth

    async def close(self) -> None:
        """Stop the flusher, try one last flush, release the engine and the outbox file.
        Whatever could not be flushed stays in the outbox for the next ``open``."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        try:
            if self._committer is not None:  # records already handed over are committed first
                await asyncio.shield(self._committer)
            if self._task is not None:
                await self._task
            try:
                await self._drain()
            except Exception:  # not a database outage (those return quietly): keep closing
                log.exception("last history flush failed; records stay in the outbox")
        finally:
            await self._engine.dispose()
            await asyncio.to_thread(self._outbox.close)

    # --- reading ------------------------------------------------------------------------

    async def get(self, record_id: str) -> dict | None:
        """The record with this id from the database, else from the outbox, else None.
        Raises ``StoreUnavailable`` when the database is down and the outbox does not have it."""
        self._check_open()
        try:
            found = await self._select_one(record_id)
            if found is None:
                found = await self._pending(record_id)
            if found is None:  # a flush may have moved it between the two looks
                found = await self._select_one(record_id)
            return found
        except DB_ERRORS as exc:
            pending = await self._pending(record_id)
            if pending is None:
                raise StoreUnavailable(f"history database unreachable: {_brief(exc)}") from exc
            return pending

    async def list(
        self,
        *,
        prompt_hash: str | None = None,
        run_id: str | None = None,
        step: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict], str | None]:
        """Records newest first (created_at, then id, descending), optionally filtered, one page
        at a time: pass the returned cursor to get the next page (None after the last). Keyset
        pagination, so records written meanwhile never shift a page. Database only: records
        still in the outbox are not listed."""
        self._check_open()
        _check_limit(limit)
        if step is not None:
            _check_step(step, "step")
        t = reward_records
        query = sa.select(t).order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit + 1)
        if prompt_hash is not None:
            query = query.where(t.c.prompt_hash == prompt_hash)
        if run_id is not None:
            query = query.where(t.c.run_id == run_id)
        if step is not None:
            query = query.where(t.c.step == step)
        if cursor is not None:
            created_at, after_id = decode_cursor(cursor)
            query = query.where(
                sa.or_(t.c.created_at < created_at, sa.and_(t.c.created_at == created_at, t.c.id < after_id))
            )
        try:
            await self._ensure_schema()
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
        except DB_ERRORS as exc:
            raise StoreUnavailable(f"history database unreachable: {_brief(exc)}") from exc
        records = [from_row(row) for row in rows[:limit]]
        return records, (encode_cursor(records[-1]) if len(rows) > limit else None)

    async def run_rewards(
        self, run_id: str, *, from_step: int | None = None, limit: int = 5000
    ) -> tuple[list[dict], int | None, dict | None]:
        """The rewards of a run's records that have a step, in step order (then created_at, id),
        for plotting rewards over training steps: dicts with ``id``, ``step``, ``created_at`` and
        ``rewards`` (the result's list; only that part of the JSON is read). At most ``limit``
        records from ``from_step`` on; a step is never cut in two unless it alone holds more
        than ``limit`` records. Returns (rows, the step to continue from or None after the last,
        truncated): ``truncated`` is None, or when one step alone held more than ``limit``
        records and only its oldest ``limit`` were returned, ``{"step", "returned", "total",
        "left_out"}`` of that step. Database only, like ``list``."""
        self._check_open()
        _check_limit(limit)
        if from_step is not None:
            _check_step(from_step, "from_step")
        t = reward_records
        order = (t.c.step, t.c.created_at, t.c.id)
        # Which records first, without touching their JSON; then only their rewards are read.
        page = sa.select(t.c.id).where(t.c.run_id == run_id, t.c.step.is_not(None)).order_by(*order).limit(limit + 1)
        if from_step is not None:
            page = page.where(t.c.step >= from_step)
        query = (
            sa.select(t.c.id, t.c.step, t.c.created_at, t.c.result["rewards"].label("rewards"))
            .where(t.c.id.in_(page.scalar_subquery()))
            .order_by(*order)
        )
        try:
            await self._ensure_schema()
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
        except DB_ERRORS as exc:
            raise StoreUnavailable(f"history database unreachable: {_brief(exc)}") from exc
        out = [
            {
                "id": row["id"],
                "step": row["step"],
                "created_at": format_timestamp(row["created_at"]),
                "rewards": row["rewards"] if isinstance(row["rewards"], list) else [],
            }
            for row in rows
        ]
        if len(out) <= limit:
            return out, None, None
        out, last = out[:limit], out[limit]["step"]
        if out[0]["step"] != last:  # the page ends inside step ``last``: that step starts the next page
            return [r for r in out if r["step"] != last], last, None
        # One step of more than ``limit`` records: its first ``limit`` only, then the next step;
        # how many were left out is said, never silent.
        count = sa.select(sa.func.count()).select_from(t).where(t.c.run_id == run_id, t.c.step == last)
        try:
            async with self._engine.connect() as conn:
                total = int((await conn.execute(count)).scalar_one())
        except DB_ERRORS as exc:
            raise StoreUnavailable(f"history database unreachable: {_brief(exc)}") from exc
        total = max(total, limit + 1)  # at least the rows just read, should one be deleted in between
        truncated = {"step": last, "returned": limit, "total": total, "left_out": total - limit}
        return out, (last + 1 if last < 2**63 - 1 else None), truncated

    # --- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("HistoryStore is closed")

    async def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        async with self._schema_lock:
            if not self._schema_ready:
                await upgrade_engine(self._engine)
                self._schema_ready = True

    async def _select_one(self, record_id: str) -> dict | None:
        await self._ensure_schema()
        query = sa.select(reward_records).where(reward_records.c.id == record_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return from_row(row) if row else None

    async def _pending(self, record_id: str) -> dict | None:
        row = await asyncio.to_thread(self._outbox.get, record_id)
        if row is None:
            return None
        payload, request, result = row
        return json.loads(payload if request is None else join(payload, request, result))

    async def _drain(self) -> tuple[int, BaseException | None]:
        """Flush batch after batch until the outbox is empty: insert (ids already present are
        skipped), commit, then delete from the outbox. A crash between the commit and the delete
        only means the batch is sent again. Returns (rows inserted, the database error if any)."""
        written = 0
        async with self._flush_lock:
            try:
                await self._ensure_schema()
                while True:
                    batch = await asyncio.to_thread(self._outbox.peek, self._flush_batch)
                    if not batch:
                        break
                    rows = [_row(payload, request, result) for _, payload, request, result in batch]
                    async with self._engine.begin() as conn:
                        written += len((await conn.execute(self._insert, rows)).all())
                    await asyncio.to_thread(self._outbox.remove, [row[0] for row in batch])
                    if len(batch) < self._flush_batch:
                        break
            except DB_ERRORS as exc:
                self._note_db(exc)
                return written, exc
        self._note_db(None)
        return written, None

    def _note_db(self, error: BaseException | None) -> None:
        if error is None:
            if self._db_up is False:
                log.info("history database reachable again; %d records waiting", self._outbox.depth)
            self._db_up = True
        else:
            if self._db_up is not False:
                log.warning("history database unreachable, records wait in the outbox: %s", _brief(error))
            self._db_up = False

    async def _run(self) -> None:
        """The flusher: drains when woken by ``record()`` or every ``flush_interval_s``; after a
        failure it waits with backoff (ignoring wake-ups, so a down database is not hammered)."""
        backoff = 0.0
        while not self._stop.is_set():
            await _wait(self._wake, self._flush_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            if self._schema_ready and self._outbox.depth == 0:
                continue
            try:
                _, error = await self._drain()
            except Exception as exc:  # an outbox or programming error: log it, keep the task alive
                log.exception("history flush failed")
                error = exc
            if error is None:
                backoff = 0.0
                continue
            backoff = min(max(2 * backoff, BACKOFF_MIN_S), BACKOFF_MAX_S)
            await _wait(self._stop, backoff * random.uniform(0.5, 1.0))
