"""Trainers posting groups in threads while a test breaks things, and a look at the history after."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx


def default_body(worker: int, n: int) -> dict:
    return {"prompt": f"w{worker} q{n}", "rollouts": ["\\boxed{1}", "\\boxed{2}"], "mode": "rubric",
            "metadata": {"run_id": "faults", "group_id": f"w{worker}-{n}"}}


class Trainers:
    """Threads posting groups until stopped; every outcome is kept."""

    def __init__(
        self, urls: list[str], threads: int = 4, body: Callable[[int, int], dict] = default_body,
        timeout_s: float = 30.0, pause_s: float = 0.02,
    ) -> None:
        self.urls = urls
        self.body = body
        self.timeout_s = timeout_s
        self.pause_s = pause_s
        self.outcomes: list[tuple[int | str, str | None]] = []  # (status or exception name, record id)
        self.results: list[dict] = []  # the bodies of the 200 answers
        self.errors: list[tuple[int, str]] = []  # (status, error type) of the other answers
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]
        self._lock = threading.Lock()

    def _run(self, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            body = self.body(worker, n)
            url = self.urls[0]
            try:
                response = httpx.post(f"{url}/rewards", json=body, timeout=self.timeout_s)
                outcome = (response.status_code, response.json().get("record_id") if response.status_code == 200 else None)
                if response.status_code == 200:
                    with self._lock:
                        self.results.append(response.json())
                if response.status_code != 200:
                    error_type = response.json()["error"]["type"]
                    assert error_type, response.text  # an explicit error, in the envelope
                    with self._lock:
                        self.errors.append((response.status_code, error_type))
            except httpx.TransportError as exc:  # the service itself is down: the client sees it
                outcome = (type(exc).__name__, None)
            with self._lock:
                self.outcomes.append(outcome)
            n += 1
            time.sleep(self.pause_s)

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:  # a request in flight ends within its timeout
            t.join(timeout=self.timeout_s + 30)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"trainer threads still running: {alive}"


def history_ids(url: str, expected: int, run_id: str = "faults") -> set[str]:
    deadline = time.monotonic() + 60
    while True:
        seen, cursor = set(), None
        while True:
            params = {"run_id": run_id, "limit": 500} | ({"cursor": cursor} if cursor else {})
            page = httpx.get(f"{url}/rubrics", params=params, timeout=30).json()
            seen |= {item["id"] for item in page["items"]}
            cursor = page["next_cursor"]
            if cursor is None:
                break
        if len(seen) >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)
