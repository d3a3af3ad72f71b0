"""`cat-reward serve` runs on uvloop and httptools by default, and on asyncio and h11 when
CAT_SERVER_LOOP / CAT_SERVER_HTTP say so: read off the real process's loaded libraries."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.service import serve, stop


def loaded(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize(
    ("env", "fast"),
    [({}, True), ({"CAT_SERVER_LOOP": "asyncio", "CAT_SERVER_HTTP": "h11"}, False)],
    ids=["default", "asyncio-h11"],
)
def test_the_server_runtime_follows_the_settings(tmp_path, env, fast):
    process, url, _ = serve(tmp_path, **env)
    try:
        maps = loaded(process.pid)
        assert ("uvloop/loop." in maps) is fast
        assert ("httptools/parser/parser." in maps) is fast
        answer = httpx.post(f"{url}/rewards", json={"prompt": "p", "rollouts": []}, timeout=10)
        assert answer.status_code == 422  # the app answers on either runtime, with its own error body
        assert "rollouts" in answer.text
    finally:
        stop(process)
