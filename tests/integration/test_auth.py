"""API keys with scopes, the keys file, open mode, and the per-key rate limit."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from cat_reward.api import create_app
from cat_reward.auth import AuthConfigError, load_keys
from cat_reward.engine.ports import EquivalenceResult
from cat_reward.settings import Settings
from tests.unit.scripts import roles

from .conftest import REDIS_URL

pytestmark = pytest.mark.anyio
BODY = {"prompt": "2+3?", "rollouts": ["\\boxed{5}", "\\boxed{6}"], "mode": "verifiable", "options": {"aggregator": "majority"}}
KEYS = "trainer-key:rewards,auditor-key:audit,root-key:admin,both-key:rewards+audit"


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference == candidate)


class App:
    def __init__(self, **settings):
        r, _, _ = roles()
        self.app = create_app(Settings(**settings), roles=r, checker=ExactChecker(), with_history=False)

    async def __aenter__(self):
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test")
        return self.client

    async def __aexit__(self, *exc):
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


async def test_scopes(tmp_path):
    async with App(api_keys=KEYS, data_dir=tmp_path) as client:
        missing = await client.post("/rewards", json=BODY)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"]["type"] == "unauthenticated" and "Bearer" in missing.json()["error"]["message"]
        wrong = await client.post("/rewards", json=BODY, headers=bearer("nope"))
        assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "unknown API key"
        assert (await client.post("/rewards", json=BODY, headers=bearer("trainer-key"))).status_code == 200
        forbidden = await client.post("/rewards", json=BODY, headers=bearer("auditor-key"))
        assert forbidden.status_code == 403 and "'rewards' scope" in forbidden.json()["error"]["message"]
        assert (await client.get("/rubrics/rb_x", headers=bearer("trainer-key"))).status_code == 403
        # Past auth, the audit key reaches the (disabled) history: 404, not 401/403.
        assert (await client.get("/rubrics/rb_x", headers=bearer("auditor-key"))).status_code == 404
        assert (await client.post("/rewards", json=BODY, headers=bearer("root-key"))).status_code == 200
        assert (await client.get("/rubrics/rb_x", headers=bearer("both-key"))).status_code == 404
        # OpenRLHF's client sends a bare URL: the key may come as a query parameter.
        assert (await client.post("/rewards?api_key=trainer-key", json=BODY)).status_code == 200
        for open_path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(open_path)).status_code == 200


async def test_keys_file_holds_only_digests(tmp_path):
    line = subprocess.run(
        [sys.executable, "-m", "cat_reward.cli", "hash-key", "file-key-123", "rewards", "--name", "ci"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    assert line.startswith("sha256:") and "file-key-123" not in line
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# trainers\n{line}\n")
    async with App(api_keys_file=keys_file, data_dir=tmp_path) as client:
        assert (await client.post("/rewards", json=BODY, headers=bearer("file-key-123"))).status_code == 200
        assert (await client.post("/rewards", json=BODY, headers=bearer("file-key-12"))).status_code == 401


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"api_keys": "k:rewards+superuser"}, "scopes must be some of"),
        ({"api_keys": "no-scope-here"}, "KEY:SCOPE"),
        ({"api_keys": "k:rewards", "auth": "open"}, "contradicts"),
        ({"auth": "keys"}, "no keys"),
    ],
)
def test_bad_key_configuration_is_refused(settings, message):
    with pytest.raises(AuthConfigError, match=message):
        load_keys(Settings(**settings))


def test_malformed_keys_file(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("sha256:abc rewards\n")
    with pytest.raises(AuthConfigError, match=":1: expected"):
        load_keys(Settings(api_keys_file=keys_file))


def _serve_exit(env_extra, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    env.update(CAT_DATA_DIR=str(tmp_path), **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "cat_reward.cli", "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )


def test_server_refuses_open_mode_unless_asked(tmp_path):
    unset = _serve_exit({}, tmp_path)
    assert unset.returncode == 2 and "CAT_AUTH=open" in unset.stderr
    empty = _serve_exit({"CAT_API_KEYS": ""}, tmp_path)
    assert empty.returncode == 2  # an empty key list is no key list
    contradiction = _serve_exit({"CAT_API_KEYS": "k:admin", "CAT_AUTH": "open"}, tmp_path)
    assert contradiction.returncode == 2 and "contradicts" in contradiction.stderr


async def test_rate_limit_per_key(tmp_path):
    async with App(api_keys=KEYS, rate_limit_per_minute=2, data_dir=tmp_path) as client:
        for _ in range(2):
            assert (await client.post("/rewards", json=BODY, headers=bearer("trainer-key"))).status_code == 200
        limited = await client.post("/rewards", json=BODY, headers=bearer("trainer-key"))
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 120  # sliding window: the wait may reach into the next minute
        assert limited.json()["error"]["type"] == "rate_limited"
        # Another key has its own budget.
        assert (await client.post("/rewards", json=BODY, headers=bearer("root-key"))).status_code == 200


async def test_rate_limit_is_shared_by_replicas_through_redis(tmp_path, redis_namespace):
    settings = dict(api_keys=KEYS, rate_limit_per_minute=3, redis_url=REDIS_URL,
                    cache_prefix=redis_namespace.rstrip(":"), data_dir=tmp_path)
    async with App(**settings) as a, App(**settings) as b:
        statuses = []
        for client in (a, b, a, b):
            statuses.append((await client.post("/rewards", json=BODY, headers=bearer("both-key"))).status_code)
        assert statuses == [200, 200, 200, 429]


async def test_the_sliding_window_holds_across_replicas_and_the_minute_boundary(redis_namespace):
    """Two limiters sharing Redis (two replicas), a burst half a second before a minute ends and
    another just after: the second burst is refused, and refused hits are not counted."""
    from cat_reward.auth import RateLimiter

    now = [60 * 7000 + 59.5]
    a = RateLimiter(4, REDIS_URL, redis_namespace, clock=lambda: now[0])
    b = RateLimiter(4, REDIS_URL, redis_namespace, clock=lambda: now[0])
    try:
        assert [await limiter.hit("k") for limiter in (a, b, a, b)] == [None] * 4
        now[0] += 1.0
        waits = [await limiter.hit("k") for limiter in (a, b, a, b)]
        assert all(w is not None and w >= 1 for w in waits)
        now[0] += max(waits) + 0.01
        assert await a.hit("k") is None  # the wait it gave was enough, whatever was refused meanwhile
    finally:
        await a.aclose()
        await b.aclose()

