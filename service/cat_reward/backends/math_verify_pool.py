"""Answer equivalence with math-verify, in worker processes with a hard deadline.

math-verify bounds its own parse/verify with ``signal.alarm``, which only works on a main
thread; inside a server it would raise or run unbounded, and sympy can spin for minutes on a
crafted answer. So each check runs in a worker process (where the alarm works), and the
parent also enforces a deadline: a worker that overruns is killed and replaced, and the
check is reported as ``timeout``, never as "not equivalent".
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
from multiprocessing.connection import Connection

from ..engine.ports import EquivalenceResult

log = logging.getLogger(__name__)


def _worker_main(conn: Connection, timeout_s: int) -> None:  # pragma: no cover - runs in a child
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    conn.send("ready")  # imports done: from here on, only checking counts against the deadline

    def parsed(answer: str):
        text = answer.strip()
        if not (text.startswith("$") or text.startswith("\\(") or text.startswith("\\[")):
            text = f"${text}$"
        try:
            return parse(text, extraction_config=configs, parsing_timeout=timeout_s, raise_on_error=True)
        except TimeoutException:
            raise
        except Exception:  # noqa: BLE001 - math-verify's own lenient path for everything but timeouts
            return parse(text, extraction_config=configs, parsing_timeout=timeout_s)

    def equivalent(gold, pred) -> bool:
        # With raise_on_error=False math-verify turns a timeout into False: silently wrong.
        try:
            return bool(verify(gold, pred, timeout_seconds=timeout_s, raise_on_error=True))
        except TimeoutException:
            raise
        except Exception:  # noqa: BLE001
            return bool(verify(gold, pred, timeout_seconds=timeout_s))

    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        reference, candidate = message
        try:
            gold = parsed(reference)
            if not gold:
                conn.send((None, "unparseable_reference"))
                continue
            pred = parsed(candidate)
            if not pred:
                conn.send((False, None))  # an answer math-verify cannot read does not match
                continue
            conn.send((equivalent(gold, pred), None))
        except TimeoutException:
            conn.send((None, "timeout"))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as data
            conn.send((None, f"error: {type(exc).__name__}: {exc}"[:300]))


STARTUP_TIMEOUT_S = 120.0  # spawning and importing sympy can take seconds on a loaded machine


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext, timeout_s: int) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, timeout_s), daemon=True)
        self.process.start()
        child.close()
        # Wait for the imports here, so a check's deadline never pays for a worker's start-up.
        if not self.conn.poll(STARTUP_TIMEOUT_S) or self.conn.recv() != "ready":
            self.kill()
            raise RuntimeError("a math-verify worker did not start")

    def kill(self) -> None:
        try:
            self.conn.close()
        finally:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(timeout=5)


class MathVerifyPool:
    """Implements ``cat_reward.engine.ports.AnswerChecker``."""

    def __init__(self, workers: int = 2, timeout_s: float = 5.0, deadline_s: float | None = None) -> None:
        self._size = max(1, workers)
        self._timeout_s = timeout_s
        # Parse and verify each get the worker-side alarm; the parent allows both plus slack.
        self._deadline_s = deadline_s if deadline_s is not None else 2 * timeout_s + 5.0
        self._ctx = mp.get_context("spawn")
        self._idle: asyncio.Queue[_Worker] | None = None
        self._all: list[_Worker] = []
        self._start_lock = asyncio.Lock()
        self.timeouts = 0

    async def _ensure_started(self) -> asyncio.Queue[_Worker]:
        if self._idle is None:
            async with self._start_lock:
                if self._idle is None:
                    queue: asyncio.Queue[_Worker] = asyncio.Queue()
                    for _ in range(self._size):
                        worker = await asyncio.to_thread(self._spawn)
                        queue.put_nowait(worker)
                    self._idle = queue
        return self._idle

    def _spawn(self) -> _Worker:
        worker = _Worker(self._ctx, max(1, int(self._timeout_s)))
        self._all.append(worker)
        return worker

    async def check(self, reference: str, candidate: str) -> EquivalenceResult:
        idle = await self._ensure_started()
        worker = await idle.get()
        try:
            worker.conn.send((reference, candidate))
            ready = await asyncio.to_thread(worker.conn.poll, self._deadline_s)
            if not ready:
                raise TimeoutError
            equivalent, error = worker.conn.recv()
        except (TimeoutError, EOFError, OSError, BrokenPipeError) as exc:
            self.timeouts += isinstance(exc, TimeoutError)
            log.warning("answer check worker %s (%r); replacing it", "timed out" if isinstance(exc, TimeoutError) else "died", exc)
            await asyncio.to_thread(worker.kill)
            self._all.remove(worker)
            idle.put_nowait(await asyncio.to_thread(self._spawn))
            return EquivalenceResult(None, "timeout" if isinstance(exc, TimeoutError) else "worker_died")
        except asyncio.CancelledError:
            # The reply may still arrive; this worker's pipe state is unknown, so replace it.
            await asyncio.to_thread(worker.kill)
            self._all.remove(worker)
            idle.put_nowait(await asyncio.to_thread(self._spawn))
            raise
        idle.put_nowait(worker)
        return EquivalenceResult(equivalent, error)

    async def close(self) -> None:
        for worker in list(self._all):
            try:
                worker.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
            await asyncio.to_thread(worker.kill)
        self._all.clear()
        self._idle = None
