"""`cat-reward score` as a real process, killed by its pid mid-file (SIGKILL: no clean-up of any
kind) and run again: the output ends complete, every group exactly once. The anchor and judge
are the stub OpenAI-compatible server (tests/support/stub_llm.py), slowed so the kill lands
while groups are in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.stub_llm import StubServer

GROUPS = 40


@pytest.fixture(scope="module")
def stub():
    with StubServer(delay_s=0.05) as server:
        yield server


def score_command(stub, tmp_path, *args: str) -> tuple[list[str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    env.update(CAT_ANCHOR_BASE_URL=stub.url, CAT_ANCHOR_MODEL="stub-model", CAT_DATA_DIR=str(tmp_path / "data"),
               CAT_LLM_MAX_RETRIES="0")
    return [sys.executable, "-m", "cat_reward.cli", "score", *args], env


def output_lines(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


def test_killed_mid_file_then_rerun_scores_every_group_exactly_once(stub, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(
        json.dumps({"id": f"g{i}", "prompt": f"Question {i}?", "rollouts": [f"answer {i}a", f"answer {i}b"]}) + "\n"
        for i in range(GROUPS)
    ))
    out = tmp_path / "out.jsonl"
    command, env = score_command(stub, tmp_path, str(data), "-o", str(out), "--concurrency", "2", "--no-progress",
                                 "--json", str(tmp_path / "first.json"))
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(output_lines(out)) < 5:
            assert process.poll() is None, f"the run ended before the kill: {process.communicate()}"
            assert time.monotonic() < deadline, "no progress within 120 s"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    process.stdout.close()
    process.stderr.close()
    assert not (tmp_path / "first.json").exists()  # it never got to its summary
    before = output_lines(out)
    assert 5 <= len(before) < GROUPS
    # Kill "at any point": a line torn mid-write is cut off on the rerun, its group scored again.
    with out.open("a") as handle:
        handle.write('{"key": "torn-line-of-a-killed-wri')

    command, env = score_command(stub, tmp_path, str(data), "-o", str(out), "--concurrency", "4",
                                 "--json", str(tmp_path / "second.json"))
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # The progress bar: done/total over the whole file (the skipped groups count as done), failures so far.
    assert f"{GROUPS}/{GROUPS}" in done.stderr and "failed=0 bad=0" in done.stderr and "group/s" in done.stderr
    after = output_lines(out)
    assert sorted(e["id"] for e in after) == sorted(f"g{i}" for i in range(GROUPS))
    assert len({e["key"] for e in after}) == GROUPS == len(after)
    assert after[: len(before)] == before  # what was written stays as it was
    assert out.read_text().endswith("\n") and "torn-line" not in out.read_text()
    summary = json.loads((tmp_path / "second.json").read_text())
    assert summary["run"]["already_done"] == len(before)
    assert summary["run"]["scored"] == GROUPS - len(before)
    assert summary["summary"]["groups"] == GROUPS and summary["failed_groups"] == 0
    assert all(len(e["rewards"]) == 2 and e["rubric_id"] for e in after)
    assert (tmp_path / "out.jsonl.failures.jsonl").read_text() == ""


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(stub, tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Question {i}?", "rollouts": ["a", "b"]}) + "\n" for i in range(GROUPS)))
    out = tmp_path / "out.jsonl"
    command, env = score_command(stub, tmp_path, str(data), "-o", str(out), "--concurrency", "2", "--no-progress")
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while len(output_lines(out)) < 2:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == 130, err[-2000:]
    written = len(output_lines(out))
    assert f"interrupted; {written} groups are in {out}: run the same command again to resume" in err
    assert "Traceback" not in err and 2 <= written < GROUPS
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len({e["key"] for e in output_lines(out)}) == len(output_lines(out)) == GROUPS
