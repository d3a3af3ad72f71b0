"""The garbage-collector tuning of `cat-reward serve`, read off the real process's metrics."""

from __future__ import annotations

import httpx

from tests.support.service import serve, stop
from tests.support.stub_llm import StubServer


def gen0_collections(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    [line] = [l for l in text.splitlines() if l.startswith('python_gc_collections_total{generation="0"}')]
    return float(line.split()[-1])


def test_the_served_process_collects_garbage_rarely_unless_told_not_to(tmp_path):
    body = {"prompt": "Why do we have seasons?", "rollouts": ["The tilt.", "The distance.", "The axis tilt."]}
    deltas = {}
    with StubServer() as stub:
        for name, env in (("tuned", {}), ("python default", {"CAT_GC_GEN0_THRESHOLD": "0"})):
            workdir = tmp_path / name.replace(" ", "-")
            workdir.mkdir()
            process, url, _ = serve(workdir, CAT_ANCHOR_BASE_URL=stub.url, CAT_ANCHOR_MODEL="stub-model", **env)
            try:
                before = gen0_collections(url)
                for i in range(200):
                    answer = httpx.post(f"{url}/rewards", json={**body, "prompt": f"{body['prompt']} ({i})"}, timeout=60)
                    assert answer.status_code == 200, answer.text
                deltas[name] = gen0_collections(url) - before
            finally:
                stop(process)
    assert deltas["python default"] >= 10, deltas  # the same work does collect often on Python's default
    assert deltas["tuned"] * 5 <= deltas["python default"], deltas
