"""Metrics, request ids and JSON logs, through real HTTP: the service as a `cat-reward serve`
process (also with several workers) against a stub OpenAI-compatible backend."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from cat_reward.observability import JsonFormatter, request_id
from tests.support.service import serve as serve_process
from tests.support.service import stop
from tests.support.stub_llm import StubServer


MARKER = "SECRET-ROLLOUT-MARKER-7731"
BODY = {"prompt": "2+3?", "rollouts": [f"{MARKER} five", "\\boxed{5}"], "mode": "rubric"}


@pytest.fixture(scope="module")
def stub():
    with StubServer() as server:
        yield server


def serve(tmp_path, stub, *extra_args, **env_overrides):
    return serve_process(tmp_path, *extra_args, CAT_ANCHOR_BASE_URL=stub.url, CAT_ANCHOR_MODEL="stub-model", **env_overrides)


def sample(text: str, name: str, **labels) -> float:
    """Sum of the samples of a metric whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_request_ids_and_logs(tmp_path, stub):
    process, url, log = serve(tmp_path, stub)
    try:
        response = httpx.post(f"{url}/rewards", json=BODY, headers={"X-Request-ID": "trace-abc"}, timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "trace-abc"
        assert any(h.get("x-request-id") == "trace-abc" for h in stub.seen_headers)  # passed on to the LLM
        assert httpx.post(f"{url}/rewards", json={"prompt": "x", "rollouts": []}).status_code == 422
        own = httpx.get(f"{url}/healthz")
        assert re.fullmatch(r"[0-9a-f]{32}", own.headers["x-request-id"])

        text = httpx.get(f"{url}/metrics").text
        assert sample(text, "cat_http_requests_total", route="/rewards", method="POST", status="200") == 1
        assert sample(text, "cat_http_requests_total", route="/rewards", status="422") == 1
        assert sample(text, "cat_http_request_duration_seconds_count", route="/rewards") == 2
        assert sample(text, "cat_llm_calls_total", role="anchor", stage="synthesis", outcome="ok") == 1
        # 2 rollouts x 5 criteria, and each rollout's canary verdict (never cached)
        assert sample(text, "cat_llm_calls_total", role="judge", stage="verdict", outcome="ok") == 10 + 2
        assert sample(text, "cat_llm_tokens_total", role="judge", stage="verdict", kind="prompt") == 120
        assert sample(text, "cat_llm_call_duration_seconds_count", role="anchor", stage="rubric") == 1
        assert sample(text, "cat_reward_count", mode="rubric") == 2
        assert sample(text, "cat_cache_requests_total", kind="verdict", result="miss") == 10
        assert sample(text, "cat_groups_scored_total", mode="rubric") == 1
        assert "cat_history_outbox_depth" in text and "cat_verdict_parse_failures_total" in text
    finally:
        stop(process)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry["logger"] == "cat_reward.access"]
    assert any(e["request_id"] == "trace-abc" and e["route"] == "/rewards" and e["status"] == 200 for e in access)
    assert MARKER not in log.read_text()  # no rollout text in the logs by default


def test_payload_logging_only_when_switched_on(tmp_path, stub):
    process, url, log = serve(tmp_path, stub, CAT_LOG_PAYLOADS="true", CAT_LOG_LEVEL="DEBUG")
    try:
        assert httpx.post(f"{url}/rewards", json=BODY, timeout=60).status_code == 200
    finally:
        stop(process)
    assert MARKER in log.read_text()


def test_metrics_add_up_across_workers(tmp_path, stub):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    process, url, _ = serve(tmp_path, stub, "--workers", "2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        for _ in range(40):
            with httpx.Client() as fresh:  # a new connection each time, so both workers take some
                assert fresh.get(f"{url}/healthz").status_code == 200
        writers = {p.name.rsplit("_", 1)[1][: -len(".db")] for p in metrics_dir.glob("counter_*.db")}
        writers.discard(str(process.pid))  # the supervising process imports the metrics too
        assert len(writers) == 2, writers  # both workers wrote their own samples
        counts = set()
        for _ in range(6):
            with httpx.Client() as fresh:
                text = fresh.get(f"{url}/metrics").text
            counts.add(sample(text, "cat_http_requests_total", route="/healthz"))
        # Whichever worker answers the scrape, it reports every worker's requests.
        assert len(counts) == 1 and counts.pop() >= 40
    finally:
        stop(process)


def test_json_formatter_fields():
    token = request_id.set("rid-1")
    try:
        import logging

        record = logging.makeLogRecord({"name": "x", "levelname": "INFO", "msg": "hello %s", "args": ("you",)})
        record.route = "/rewards"
        entry = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert entry["message"] == "hello you" and entry["request_id"] == "rid-1" and entry["route"] == "/rewards"
