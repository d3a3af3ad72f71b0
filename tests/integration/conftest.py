"""Real Redis (127.0.0.1:6379, started by .ci/run when it is not running) and private
redis-server processes that a test may kill."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis

REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_namespace():
    """A namespace of our own in the shared Redis, removed afterwards."""
    namespace = f"cat-test:{uuid.uuid4().hex[:8]}:"
    yield namespace
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=namespace + "*", count=500):
        client.delete(key)
    client.close()


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own, on a free port, that the test may kill."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (.ci/run installs and starts Redis)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("private redis-server did not start")
            time.sleep(0.05)
    client.close()
    yield url, process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
