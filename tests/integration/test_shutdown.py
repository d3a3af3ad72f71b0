"""Graceful shutdown: SIGTERM while a group is being scored lets it finish and answer."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from tests.support.service import serve, stop
from tests.support.stub_llm import StubServer

BODY = {"prompt": "2+3?", "rollouts": ["\\boxed{5}", "five"], "mode": "rubric"}


def test_sigterm_finishes_groups_in_flight(tmp_path):
    with StubServer(delay_s=1.0) as stub:  # synthesis, rubric, verdicts: about 3 s of LLM time
        process, url, log = serve(tmp_path, CAT_ANCHOR_BASE_URL=stub.url, CAT_ANCHOR_MODEL="stub-model")
        try:
            result: dict = {}

            def post():
                try:
                    result["response"] = httpx.post(f"{url}/rewards", json=BODY, timeout=60)
                except httpx.HTTPError as exc:
                    result["error"] = exc

            client = threading.Thread(target=post)
            client.start()
            deadline = time.monotonic() + 10
            while not stub.seen_headers and time.monotonic() < deadline:  # the group is in the pipeline
                time.sleep(0.05)
            assert stub.seen_headers, "the request never reached the LLM"
            process.send_signal(signal.SIGTERM)
            client.join(timeout=60)
            assert "error" not in result, result.get("error")
            response = result["response"]
            assert response.status_code == 200, response.text
            assert len(response.json()["rewards"]) == 2 and None not in response.json()["rewards"]
            # uvicorn re-raises SIGTERM once its shutdown is complete, so "killed by SIGTERM" is a clean exit.
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
            assert "Application shutdown complete" in log.read_text()
            try:
                httpx.get(f"{url}/healthz", timeout=2)
                raise AssertionError("the service still answers after shutting down")
            except httpx.ConnectError:
                pass
        finally:
            stop(process)
