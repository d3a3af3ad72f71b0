"""Faults mid-run, with trainers posting all along: the judge process killed (and brought back),
and the service itself restarted. Every request ends in rewards or an explicit error, and every
group whose rewards were returned is in the history afterwards."""

from __future__ import annotations

import os
from collections import Counter
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.faults import Trainers, history_ids
from tests.support.service import free_port, serve, stop

ROOT = Path(__file__).resolve().parents[2]


def start_stub(port: int, delay: float = 0.05) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.stub_llm", "--port", str(port), "--delay", str(delay)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/version", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("stub did not start")


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_judge_killed_mid_run_then_back(tmp_path):
    port = free_port()
    stub = start_stub(port)
    process, url, log = serve(
        tmp_path, CAT_ANCHOR_BASE_URL=f"http://127.0.0.1:{port}/v1", CAT_ANCHOR_MODEL="stub-model",
        CAT_LLM_MAX_RETRIES="1", CAT_LLM_BREAKER_COOLDOWN_S="0.5", CAT_LOG_LEVEL="WARNING",
    )
    try:
        with Trainers([url]) as trainers:
            time.sleep(1.5)
            kill(stub)  # the judge dies mid-run
            time.sleep(1.5)
            stub = start_stub(port)  # and comes back
            time.sleep(2.0)
        statuses = [s for s, _ in trainers.outcomes]
        print(f"\njudge killed: {Counter(statuses)}")
        assert set(statuses) <= {200, 503}, set(statuses)  # rewards, or an explicit "unavailable"
        assert 503 in statuses and statuses.count(200) > 10
        assert statuses[-1] == 200 or 200 in statuses[-8:]  # served again once the judge is back
        returned = {rid for s, rid in trainers.outcomes if s == 200}
        assert returned <= history_ids(url, len(returned))  # every returned reward is recorded
    finally:
        stop(process)
        kill(stub)


def test_service_restarted_mid_run(tmp_path):
    port = free_port()
    stub = start_stub(port)
    env = dict(CAT_ANCHOR_BASE_URL=f"http://127.0.0.1:{port}/v1", CAT_ANCHOR_MODEL="stub-model",
               CAT_LOG_LEVEL="WARNING", CAT_DATA_DIR=str(tmp_path / "data"))
    process, url, _ = serve(tmp_path, **env)
    urls = [url]
    try:
        with Trainers(urls) as trainers:
            time.sleep(1.5)
            stop(process)  # SIGTERM: in-flight groups finish, then the process exits
            time.sleep(0.5)
            process, url2, _ = serve(tmp_path, **env)  # a new process, same data dir, new port
            urls[0] = url2
            time.sleep(1.5)
        statuses = [s for s, _ in trainers.outcomes]
        print(f"\nservice restarted: {Counter(statuses)}")
        assert statuses.count(200) > 10
        assert set(statuses) - {200} <= {"ConnectError", "RemoteProtocolError", "ReadError"}, set(statuses)
        returned = {rid for s, rid in trainers.outcomes if s == 200}
        assert returned <= history_ids(urls[0], len(returned))  # nothing returned before the restart is lost
    finally:
        stop(process)
        kill(stub)
