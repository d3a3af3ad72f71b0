"""Start `cat-reward serve` as a real process for a test, and stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(workdir: Path, *extra_args: str, **env: str) -> tuple[subprocess.Popen, str, Path]:
    """The service on a free port, CAT_* taken only from ``env`` (open mode and a data dir under
    ``workdir`` unless given). Returns (process, base URL, log file)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CAT_", "PROMETHEUS_"))}
    full_env.update(CAT_DATA_DIR=str(workdir / "data"), CAT_AUTH="open")
    if "CAT_API_KEYS" in env or "CAT_API_KEYS_FILE" in env:
        del full_env["CAT_AUTH"]
    full_env.update(env)
    log_path = workdir / f"serve-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cat_reward.cli", "serve", "--port", str(port), *extra_args],
            env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url, log_path
        except httpx.HTTPError:
            time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"the service did not come up:\n{log_path.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
