"""Bench (c): what the cache does for a retried request.

Starts a real ``cat-reward serve`` (in-process cache on, SQLite history in a temporary folder,
one bench API key)
against the real CPU vLLM judge, and posts the same rubric-mode group (G=8) three times: the
first request, an identical retry (served from the cache), and the same retry with
``options.cache: false`` (what a retry costs without the cache). Reports wall time, the LLM
calls the response reports, and the requests vLLM itself counted (its /metrics).

    .venv/bin/python bench/cache_retry.py --judge-url http://127.0.0.1:8011/v1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from common import free_port, load_data, table, write_results
from summarize import summarize
from service_overhead import AUTH, BENCH_KEY, stop, wait_http

G = 8


def vllm_counts(root: str) -> tuple[float, float]:
    """(HTTP generation requests, sequences) vLLM has served: a /v1/completions request with a
    list of prompts is one HTTP request and one sequence per prompt."""
    http_requests = sequences = 0.0
    for line in httpx.get(f"{root}/metrics", timeout=10).text.splitlines():
        if line.startswith("http_requests_total") and 'handler="/v1/' in line and "completions" in line:
            http_requests += float(line.split()[-1])
        elif line.startswith("vllm:request_success_total"):
            sequences += float(line.split()[-1])
    return http_requests, sequences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge-url", default="http://127.0.0.1:8011/v1")
    args = parser.parse_args()
    data = load_data()
    root = args.judge_url[: -len("/v1")] if args.judge_url.endswith("/v1") else args.judge_url
    model = httpx.get(f"{args.judge_url}/models", timeout=10).json()["data"][0]["id"]

    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="cat-bench-cache-"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CAT_")},
        "CAT_ANCHOR_BASE_URL": args.judge_url,
        "CAT_ANCHOR_MODEL": model,
        "CAT_DATA_DIR": str(tmp / "data"),
        "CAT_API_KEYS": f"{BENCH_KEY}:rewards",  # the production auth path, with one bench key
    }
    service = subprocess.Popen(
        [str(Path(sys.executable).with_name("cat-reward")), "serve", "--port", str(port)],
        env=env, cwd=tmp, stdout=open(tmp / "service.log", "w"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    body = {
        "prompt": data["prompt"],
        "rollouts": data["rollouts"][:G],
        "mode": "rubric",
        "options": {"seed": 7, "synthesis": {"max_tokens": 256}, "rubric": {"max_tokens": 256}},
    }
    rows = []
    try:
        wait_http(f"{base}/readyz", 120, service)
        with httpx.Client(base_url=base, timeout=600, headers=AUTH) as client:
            warm = {**body, "rollouts": body["rollouts"][:2], "options": {**body["options"], "seed": 1}}
            client.post("/rewards", json=warm).raise_for_status()  # capability probes, template, grammars
            for name, payload in (
                ("first request", body),
                ("identical retry (cache on)", body),
                ("identical retry, options.cache = false", {**body, "options": {**body["options"], "cache": False}}),
            ):
                before = vllm_counts(root)
                started = time.perf_counter()
                response = client.post("/rewards", json=payload)
                wall = time.perf_counter() - started
                response.raise_for_status()
                result = response.json()
                time.sleep(0.5)  # let vLLM's counters settle
                rows.append({
                    "request": name,
                    "wall_s": wall,
                    "llm_calls": result["usage"]["llm_calls"],
                    "vllm_http_requests": vllm_counts(root)[0] - before[0],
                    "vllm_sequences": vllm_counts(root)[1] - before[1],
                    "cache_hits": result["usage"].get("cache_hits"),
                    "rewards": result["rewards"],
                })
                print(rows[-1], flush=True)
    finally:
        stop(service)
    first, cached = rows[0], rows[1]
    same = first["rewards"] == cached["rewards"]
    markdown = "\n".join([
        f"### Cache on retries (real CPU judge {model}, G={G}, rubric mode, through `cat-reward serve`)",
        "",
        table(["request", "wall s", "LLM calls (response usage)", "HTTP requests vLLM served", "sequences vLLM ran",
               "cache hits"],
              [[r["request"], r["wall_s"], r["llm_calls"], int(r["vllm_http_requests"]), int(r["vllm_sequences"]),
                r["cache_hits"]] for r in rows]),
        "",
        f"The cached retry returned {'the same' if same else 'DIFFERENT'} rewards as the first request.",
    ])
    write_results(
        "cache_retry",
        {
            "model": model,
            "G": G,
            "rows": rows,
            "summary": {
                "first_wall_s": first["wall_s"],
                "retry_wall_s": cached["wall_s"],
                "retry_llm_calls": cached["llm_calls"],
                "retry_vllm_http_requests": cached["vllm_http_requests"],
                "retry_vllm_sequences": cached["vllm_sequences"],
                "retry_same_rewards": same,
                "uncached_retry_wall_s": rows[2]["wall_s"],
            },
        },
        markdown,
    )
    summarize()  # bench/results/summary.{json,md}


if __name__ == "__main__":
    main()
