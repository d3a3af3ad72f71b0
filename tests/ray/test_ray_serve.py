"""cat-reward on Ray Serve, on a local multi-node Ray cluster (a head and 2 worker nodes, no
dashboard, loopback only): the FastAPI app as a Serve ingress over HTTP, the handle path of
``cat_reward_trainers.ray_serve`` from the driver and from a Ray task, and a few hundred
requests over both while one replica is SIGKILLed and then a worker node is removed. Every
request must end with its rewards (the adapter and the HTTP client retry under the same
idempotency key), and the PostgreSQL history must hold each request exactly once.

The LLMs are a stub OpenAI-compatible server in this process (tests/support/stub_llm.py): the
subject is Serve's plumbing, not the judge. Ray is started and shut down here only: never
`ray stop` (it kills every Ray process on the machine).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ROOT / "trainer_adapters"
if importlib.util.find_spec("cat_reward_trainers") is None:  # the service venv does not install them
    sys.path.insert(0, str(ADAPTERS))

# Read by Ray when it is imported: set before that, for this process and the nodes it starts.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # local-only mode: head, workers and GCS on 127.0.0.1
    "RAY_TMPDIR": "/tmp/rt17",  # socket paths must stay under 107 characters
    "RAY_USAGE_STATS_ENABLED": "0",
}
os.environ.update(RAY_ENV)

with warnings.catch_warnings():  # Serve's pydantic v1 shims warn at import (not this project's code)
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from cat_reward.ray_serve import APP_NAME, DEPLOYMENT_NAME, CatReward
from cat_reward_client import CatRewardClient, InvalidRequestError, RetryPolicy  # noqa: E402
from cat_reward_trainers.ray_serve import CatRewardHandle  # noqa: E402
from tests.storage.conftest import fresh_pg_database  # noqa: E402
from tests.support.stub_llm import StubServer  # noqa: E402

# Serve's and Ray's own deprecation warnings (pydantic v1 shims) are not this project's.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

HTTP_PORT = 19400  # helper 17's range, 19400-19499
API_KEY = "ray-test-key"
CALL_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def pg_url():
    loop = asyncio.new_event_loop()
    manager = fresh_pg_database()
    try:
        url = loop.run_until_complete(manager.__aenter__())
        yield url
    finally:
        loop.run_until_complete(manager.__aexit__(None, None, None))
        loop.close()


def wait_running(deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(APP_NAME)
        if status is not None and status.status == "RUNNING":
            return
        if status is not None and status.status == "DEPLOY_FAILED":
            details = {name: d.message for name, d in status.deployments.items()}
            raise RuntimeError(f"the Serve app failed to deploy: {status.message} {details}")
        time.sleep(0.5)
    raise TimeoutError(f"the Serve app was not running after {deadline_s} s: {serve.status().applications}")


@pytest.fixture(scope="module")
def cluster(pg_url, tmp_path_factory):
    saved = {"PYTHONPATH": os.environ.get("PYTHONPATH")}
    # The nodes' worker processes inherit this environment: the adapters are importable there.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(ADAPTERS), saved["PYTHONPATH"]] if p)
    Path(RAY_ENV["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    stub = StubServer()
    stub.__enter__()
    started = time.monotonic()
    ray_cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            # A removed node is noticed in about 2 s instead of 30 s.
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                               "health_check_timeout_ms": 500},
        },
    )
    try:
        workers = [ray_cluster.add_node(num_cpus=1) for _ in range(2)]
        ray.init(address=ray_cluster.address, namespace="cat-reward-test", log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": HTTP_PORT}, proxy_location="HeadOnly")
        settings = {
            "anchor_base_url": [stub.url],
            "anchor_model": "stub-model",
            "database_url": pg_url,
            "data_dir": str(tmp_path_factory.mktemp("ray-data")),  # every replica shares the outbox file
            "api_keys": f"{API_KEY}:rewards+audit",
            "log_json": False,
        }
        deployment = CatReward.options(
            autoscaling_config={"min_replicas": 2, "max_replicas": 2, "target_ongoing_requests": 32},
            health_check_period_s=1,
            graceful_shutdown_timeout_s=5,
        )
        serve._run(deployment.bind(settings), _blocking=False, name=APP_NAME, route_prefix="/")
        wait_running(120)
        assert ray_cluster.address.startswith("127.0.0.1:"), ray_cluster.address  # loopback only
        print(f"cluster at {ray_cluster.address} and app up in {time.monotonic() - started:.1f} s")
        yield ray_cluster, workers
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            ray_cluster.shutdown()
            stub.__exit__(None, None, None)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def http_client() -> CatRewardClient:
    # Serve answers 500 for a request whose replica died: retried, like 503, under the same key.
    policy = RetryPolicy(max_retries=8, backoff_initial=0.2, backoff_max=2.0, retry_statuses=frozenset({500, 502, 503}))
    return CatRewardClient(f"http://127.0.0.1:{HTTP_PORT}", api_key=API_KEY, retry=policy, timeout=CALL_TIMEOUT_S)


def group(i: int, run_id: str) -> dict:
    return {
        "prompt": f"What is {i} + 1?",
        "rollouts": [f"{i + 1}", f"It is {i + 2}.", f"\\boxed{{{i + 1}}}"],
        "mode": "rubric",
        "metadata": {"run_id": run_id, "group_id": f"g{i}"},
    }


def replicas() -> list[dict]:
    found = []
    for info in ray._private.state.actors().values():
        if f"ServeReplica:{APP_NAME}:{DEPLOYMENT_NAME}" in info.get("ActorClassName", "") and info["State"] == "ALIVE":
            found.append(info)
    return found


async def history(pg_url: str, run_id: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(pg_url, timeout=10)
    try:
        return await connection.fetch("SELECT id, group_id FROM reward_records WHERE run_id = $1", run_id, timeout=10)
    finally:
        await connection.close()


def test_http_and_handle_serve_the_same_app(cluster):
    """The ingress serves every route of the app (auth included); the handle answers the same."""
    body = group(0, "same-app")
    with http_client() as client:
        over_http = client.rewards(**{k: body[k] for k in ("prompt", "rollouts", "mode")}, metadata=body["metadata"])
        assert client.healthz().status == "ok"
        assert client.list_rubrics(run_id="same-app").items is not None  # an audit route, through the ingress
    unauthenticated = CatRewardClient(f"http://127.0.0.1:{HTTP_PORT}", max_retries=0, timeout=CALL_TIMEOUT_S)
    with unauthenticated, pytest.raises(Exception) as refused:
        unauthenticated.rewards("p", ["a", "b"])
    assert getattr(refused.value, "status", None) == 401

    handle = CatRewardHandle(timeout_s=CALL_TIMEOUT_S)
    over_handle = handle.rewards(**{k: body[k] for k in ("prompt", "rollouts", "mode")}, metadata=body["metadata"])
    assert over_handle.rewards == over_http.rewards and len(over_http.rewards) == 3
    assert None not in over_http.rewards
    assert over_handle.record_id == over_http.record_id  # same body, same default key: one record
    assert over_handle.provenance.judge_model == "stub-model"

    # the caller's own rubric and per-rollout token log-probabilities, as the HTTP client sends them
    mine = [{"criterion": "Gives a number.", "points": 2}, {"criterion": "Shows the sum."}]
    own = handle.rewards("What is 1 + 1?", ["2", "It is 2."], mode="rubric", rubric=mine,
                         token_logprobs=[[-0.1], [-0.2, -0.3, -0.1]])
    assert [c.text for c in own.rubric] == ["Gives a number.", "Shows the sum."]
    assert [c.weight for c in own.rubric] == [2.0, 1.0]
    assert len(own.rewards) == 2 and None not in own.rewards

    with pytest.raises(InvalidRequestError) as invalid:
        handle.rewards("What?", [], mode="rubric")
    assert invalid.value.status == 422 and invalid.value.param == "rollouts"

    batch = handle.rewards_batch([group(1, "same-app"), group(2, "same-app")])
    assert [item.ok for item in batch.results] == [True, True]


def test_handle_adapter_inside_a_ray_task(cluster):
    """A trainer's Ray worker builds the adapter and calls the service with no HTTP."""

    @ray.remote(num_cpus=0)
    def trainer_step(adapter: CatRewardHandle, groups: list[dict]) -> list[list[float | None]]:
        return [adapter.rewards(g["prompt"], g["rollouts"], g["mode"], metadata=g["metadata"]).rewards for g in groups]

    groups = [group(i, "ray-task") for i in range(3)]
    rewards = ray.get(trainer_step.remote(CatRewardHandle(timeout_s=CALL_TIMEOUT_S), groups), timeout=CALL_TIMEOUT_S * 2)
    assert len(rewards) == 3 and all(len(r) == 3 and None not in r for r in rewards)


def test_load_survives_a_killed_replica_and_a_removed_node(cluster, pg_url):
    ray_cluster, workers = cluster
    run_id = f"ray-load-{uuid.uuid4().hex[:8]}"
    per_thread, threads_per_path = 75, 2  # 150 over HTTP, 150 over handles
    total = per_thread * threads_per_path * 2
    done = 0
    done_lock = threading.Lock()
    results: dict[int, list | BaseException] = {}
    handles: list[CatRewardHandle] = []

    def run(path: str, start: int) -> None:
        nonlocal done
        handle = CatRewardHandle(max_retries=8, timeout_s=CALL_TIMEOUT_S)
        handles.append(handle)
        with http_client() as client:
            for i in range(start, start + per_thread):
                g = group(i, run_id)
                try:
                    if path == "http":
                        result = client.rewards(g["prompt"], g["rollouts"], g["mode"], metadata=g["metadata"])
                    else:
                        result = handle.rewards(g["prompt"], g["rollouts"], g["mode"], metadata=g["metadata"])
                    results[i] = result.rewards
                except Exception as exc:  # noqa: BLE001 - every failure is reported below
                    results[i] = exc
                with done_lock:
                    done += 1

    def wait_for(count: int, deadline_s: float = 120) -> None:
        deadline = time.monotonic() + deadline_s
        while done < count and time.monotonic() < deadline:
            time.sleep(0.05)

    threads = [
        threading.Thread(target=run, args=(path, (k * threads_per_path + j) * per_thread), daemon=True)
        for k, path in enumerate(("http", "handle"))
        for j in range(threads_per_path)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()

    wait_for(total // 5)
    victim = replicas()[0]
    os.kill(victim["Pid"], signal.SIGKILL)
    killed_at = done

    wait_for(total // 2)
    # Serve has replaced the killed replica (both alive: the head has room for one only, so one
    # runs on a worker node), then that worker node goes.
    deadline = time.monotonic() + 90
    while len(live := replicas()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    worker_ids = {node.node_id: node for node in workers}
    on_workers = [r for r in live if r["Address"]["NodeID"] in worker_ids]
    assert on_workers, f"no replica on a worker node: {live}"
    removed = worker_ids[on_workers[0]["Address"]["NodeID"]]
    ray_cluster.remove_node(removed, allow_graceful=False)
    removed_at = done

    for thread in threads:
        thread.join(timeout=240)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), f"load still running after {elapsed:.0f} s ({done}/{total})"

    failures = {i: r for i, r in results.items() if isinstance(r, BaseException)}
    assert failures == {}, f"{len(failures)} requests failed: {list(failures.items())[:3]}"
    assert sorted(results) == list(range(total))
    assert all(len(r) == 3 and None not in r for r in results.values())

    # The history: every request once, none twice, though some were sent twice.
    deadline = time.monotonic() + 60
    while True:
        rows = asyncio.run(history(pg_url, run_id))
        if len(rows) >= total or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rows) == total, f"{len(rows)} records for {total} requests"
    assert sorted(r["group_id"] for r in rows) == sorted(f"g{i}" for i in range(total))
    retried = sum(h.retries_after_lost for h in handles)
    print(f"{total} requests in {elapsed:.1f} s; replica killed at {killed_at}, node removed at {removed_at}; "
          f"handle retries after a lost replica: {retried}; replicas now: {len(replicas())}")
