"""The real CPU vLLM judge killed mid-run (SIGKILL to its whole process tree: API server, engine
core, worker) while trainers post, then started again on the same port. Every request ends in
rewards or an explicit 503 (or the anchor's own explicit 502 on a group); once the judge is
back the service serves again without a restart, and every group whose rewards were returned
is in the history. This judge is the test's own, not the session's, so the other end-to-end
tests are not disturbed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from cat_reward import local_judge
from tests.support.faults import Trainers, history_ids

from .conftest import _stop, _tail, free_port, start_service

pytestmark = pytest.mark.e2e
RUN_ID = "judge-killed"


def start_judge(port: int, log) -> subprocess.Popen:
    with open(log, "a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cat_reward.cli", "judge", "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def body(worker: int, n: int) -> dict:
    # Small budgets: a CPU judge answers a group in seconds, so several are in flight at the kill.
    mode = "verifiable" if worker % 2 == 0 else "rubric"
    return {
        "prompt": f"What is {worker} + {n}?",
        "rollouts": [f"{worker} + {n} = \\boxed{{{worker + n}}}", f"I think it is \\boxed{{{worker + n + 1}}}"],
        "mode": mode,
        "options": {"synthesis": {"max_tokens": 48}, "rubric": {"max_tokens": 160}, "seed": n},
        "metadata": {"run_id": RUN_ID, "group_id": f"w{worker}-{n}"},
    }


def test_real_judge_killed_mid_run_then_back(judge_url, tmp_path):  # judge_url: the judge is prepared
    port = free_port()
    judge_log = tmp_path / "judge.log"
    judge = start_judge(port, judge_log)
    base = f"http://127.0.0.1:{port}/v1"
    service = None
    try:
        local_judge.wait_ready(base, judge, timeout_s=600)
        service, url = start_service(
            {
                "CAT_ANCHOR_BASE_URL": base,
                "CAT_ANCHOR_MODEL": local_judge.SERVED_MODEL,
                "CAT_LLM_MAX_RETRIES": "1",
                "CAT_LLM_BREAKER_COOLDOWN_S": "1",
                "CAT_LOG_LEVEL": "WARNING",
            },
            tmp_path / "service.log",
        )
        with Trainers([url], threads=2, body=body, timeout_s=300, pause_s=0.2) as trainers:
            deadline = time.monotonic() + 240
            while sum(1 for s, _ in trainers.outcomes if s == 200) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            served_before = len(trainers.outcomes)
            os.killpg(judge.pid, signal.SIGKILL)  # the whole tree, mid-request
            judge.wait(timeout=30)
            time.sleep(5)
            judge = start_judge(port, judge_log)
            local_judge.wait_ready(base, judge, timeout_s=600)
            back = len(trainers.outcomes)
            deadline = time.monotonic() + 240
            while not any(s == 200 for s, _ in trainers.outcomes[back:]) and time.monotonic() < deadline:
                time.sleep(0.5)
        statuses = [s for s, _ in trainers.outcomes]
        print(f"\nreal judge killed: {Counter(statuses)} ({served_before} answered before the kill)")
        assert served_before >= 2, f"nothing was served before the kill: {statuses}\n{_tail(tmp_path / 'service.log')}"
        # Rewards, or an explicit 503 while the judge is away. The one other answer allowed is the
        # anchor's own failure on a group (502 synthesis/rubric generation failed): SmolLM2 sometimes
        # writes too few criteria, judge or no kill, and that is an explicit error, not a fault.
        model_failures = {(502, "rubric_generation_failed"), (502, "synthesis_failed")}
        unexpected = [e for e in trainers.errors if e[0] != 503 and e not in model_failures]
        assert set(statuses) <= {200, 502, 503} and not unexpected, (
            f"{Counter(statuses)} {Counter(trainers.errors)}\n{_tail(tmp_path / 'service.log')}"
        )
        assert 503 in statuses[served_before:], "the kill was not noticed"
        assert any(s == 200 for s in statuses[back:]), "the service did not serve again once the judge was back"
        for result in trainers.results:  # a reward that could not be computed says so
            for reward, detail in zip(result["rewards"], result["details"]):
                assert reward is not None or detail.get("error"), detail
        returned = {rid for s, rid in trainers.outcomes if s == 200}
        assert returned <= history_ids(url, len(returned), run_id=RUN_ID)
    finally:
        if service is not None:
            _stop(service)
        _stop(judge)
