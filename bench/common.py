"""Shared bench helpers: the fixed data set, an HTTP transport that counts requests and tokens
(and salts vLLM's prefix cache per measured run), and the results files."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
RESULTS = Path(os.environ.get("CAT_BENCH_RESULTS") or BENCH / "results")
DATA = BENCH / "data" / "seasons.json"
ROOT = BENCH.parent


def load_data() -> dict:
    return json.loads(DATA.read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.lru_cache(maxsize=1)
def calibration_ms() -> float:
    """CPU milliseconds this machine takes for a fixed piece of pure-Python work like the
    service's own (JSON both ways, hashing, string building), best of 5, measured once per
    bench process. Machines here differ by 2-3x; CPU figures from two machines compare only
    after dividing by this."""
    payload = load_data()
    best = math.inf
    for _ in range(5):
        started = time.process_time()
        for i in range(1000):
            text = json.dumps({**payload, "i": i})
            hashlib.sha256(json.loads(text)["prompt"].encode() * 8).hexdigest()
            "".join(f"<{k}>{v!s:.40}</{k}>" for k, v in payload.items())
        best = min(best, time.process_time() - started)
    return round(1000 * best, 2)


def steal_share(before: list[int], after: list[int]) -> float:
    """Share of CPU time the hypervisor took (``steal`` in /proc/stat) between two readings."""
    delta = [b - a for a, b in zip(before, after)]
    return round(delta[7] / sum(delta[:8]), 3) if sum(delta[:8]) else 0.0


def cpu_times() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def machine() -> dict:
    return {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "calibration_ms": calibration_ms(),
    }


@dataclass
class Tally:
    """Requests and tokens seen on the wire, by path."""

    requests: dict[str, int] = field(default_factory=dict)
    prompt_tokens: dict[str, int] = field(default_factory=dict)
    completion_tokens: dict[str, int] = field(default_factory=dict)
    prompts: dict[str, int] = field(default_factory=dict)  # prompts carried (a completions list counts each)

    def add(self, path: str, body: dict | None, usage: dict | None) -> None:
        self.requests[path] = self.requests.get(path, 0) + 1
        carried = len(body["prompt"]) if body and isinstance(body.get("prompt"), list) else 1
        self.prompts[path] = self.prompts.get(path, 0) + carried
        if usage:
            self.prompt_tokens[path] = self.prompt_tokens.get(path, 0) + int(usage.get("prompt_tokens") or 0)
            self.completion_tokens[path] = self.completion_tokens.get(path, 0) + int(usage.get("completion_tokens") or 0)

    def snapshot(self) -> Tally:
        return Tally(dict(self.requests), dict(self.prompt_tokens), dict(self.completion_tokens), dict(self.prompts))

    def since(self, before: Tally) -> dict:
        llm_paths = [p for p in self.requests if p.endswith("/completions")]

        def delta(attr: str) -> int:
            now, then = getattr(self, attr), getattr(before, attr)
            return sum(now.get(p, 0) - then.get(p, 0) for p in llm_paths)

        return {
            "requests": delta("requests"),
            "prompt_tokens": delta("prompt_tokens"),
            "decode_tokens": delta("completion_tokens"),
            "prompts": delta("prompts"),
            "by_path": {p: self.requests.get(p, 0) - before.requests.get(p, 0) for p in llm_paths},
        }


class CountingTransport(httpx.AsyncBaseTransport):
    """Forwards to a real transport; counts every request and the usage in its response. With
    ``salt`` set, adds vLLM's ``cache_salt`` to LLM requests: prefix-cache blocks are then shared
    only between requests of the same measured run (as in production, where every group brings
    new rollouts), never reused from an earlier run of the bench."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.tally = Tally()
        self.salt: str | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = None
        path = request.url.path
        if request.method == "POST" and path.endswith("/completions"):
            body = json.loads(request.content)
            if self.salt is not None:
                body["cache_salt"] = self.salt
                headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
                request = httpx.Request(request.method, request.url, headers=headers, json=body, extensions=request.extensions)
        response = await self._inner.handle_async_request(request)
        content = await response.aread()
        usage = None
        if path.endswith("/completions") and response.status_code == 200:
            try:
                usage = json.loads(content).get("usage")
            except ValueError:
                usage = None
        self.tally.add(path, body, usage)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-encoding", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=content, extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def auc(pairs: list[tuple[float, bool]]) -> float | None:
    """Probability that a met pair scores above an unmet one (ties count half)."""
    # Rounded: scores equal up to float noise (1e-16) are ties, whichever path computed them.
    pos = [round(s, 9) for s, t in pairs if t is True and s is not None]
    neg = [round(s, 9) for s, t in pairs if t is False and s is not None]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def write_results(name: str, payload: dict, markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"bench": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(markdown)


def table(headers: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def canned_completions(n: int, model: str) -> dict:
    """A vLLM-shaped /v1/completions answer for a batch of ``n`` single-token verdicts (legacy
    logprobs; every third one "no"), for the in-process benches that answer the judge themselves."""
    return {
        "model": model,
        "choices": [
            {
                "index": i,
                "text": "yes" if i % 3 else "no",
                "logprobs": {
                    "tokens": ["yes" if i % 3 else "no"],
                    "token_logprobs": [-0.2],
                    "top_logprobs": [{"yes": -0.2 if i % 3 else -1.8, "no": -1.8 if i % 3 else -0.2}],
                },
            }
            for i in range(n)
        ],
        "usage": {"prompt_tokens": 600 * n, "completion_tokens": n},
    }
