"""A simulated GPU judge: an OpenAI-compatible server that answers like vLLM for the service's
fast paths, with the latency of a cost model instead of a model.

It answers ``GET /health``, ``/version``, ``/v1/models``, ``/stats`` and ``POST /tokenize``,
``/detokenize``, ``/v1/completions`` (a list of prompts, ``max_tokens`` 1, ``allowed_token_ids``,
legacy logprobs: the batched single-token verdicts) and ``/v1/chat/completions`` (synthesis text,
rubric JSON, fused JSON, one-word verdicts). Every sequence goes through one simulated engine:

- **continuous batching**: up to ``max_num_seqs`` sequences run at once, the rest wait in
  arrival order (vLLM's waiting queue);
- **engine steps**: each step decodes one token for every running sequence that finished its
  prefill and prefills up to ``max_num_batched_tokens`` prompt tokens (chunked prefill); it
  lasts ``step_time + kv_read_per_token x tokens held by decoding sequences + prefilled
  tokens / prefill_rate``;
- **a prefix cache**: prompts are hashed in blocks of ``block_size`` tokens, chained (a block's
  key includes every block before it, as vLLM's); a block found in the LRU cache is not
  prefilled again; the cache holds ``kv_cache_tokens`` tokens.

So a request costs about ``uncached prompt tokens / prefill_rate + decode tokens x step time``
when it has the engine to itself, and more when it shares it. ``time_scale`` multiplies every
duration (0.1: ten times faster than the modelled GPU). Token counts are ``ceil(chars / 4)``.

Generation lengths (decode tokens) are drawn per request from a log-normal distribution
(median and sigma settable, clipped to the request's ``max_tokens``); the seed is the request's
content, so a run is reproducible. Verdicts decode one token.

The engine clock runs on deadlines, not on sleep lengths: when the machine is busy and a sleep
overshoots, the next step starts at once, so the simulated throughput holds on a loaded host.

    python -m cat_reward.loadtest.simjudge --port 19301            # loopback only

The defaults stand for a 4-8B judge on one H100 80 GB; bench/README.md cites where each comes from.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field

from aiohttp import web

MODEL = "sim-judge-8b"
CHARS_PER_TOKEN = 4


@dataclass
class CostModel:
    prefill_tokens_per_s: float = 25_000.0
    step_time_s: float = 0.006
    kv_read_s_per_token: float = 39e-9
    max_num_seqs: int = 1024
    max_num_batched_tokens: int = 8192
    block_size: int = 16
    kv_cache_tokens: int = 400_000
    prefix_caching: bool = True
    gen_median_tokens: float = 220.0
    gen_sigma: float = 0.5
    time_scale: float = 1.0


@dataclass
class Stats:
    requests: dict = field(default_factory=dict)
    sequences: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    decode_tokens: int = 0
    busy_s: float = 0.0  # simulated engine time spent on steps (unscaled seconds x time_scale)
    steps: int = 0
    max_running: int = 0
    max_waiting: int = 0
    session_ids: int = 0  # requests that carried X-Session-ID


def tokens_of(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


class _Seq:
    __slots__ = ("prompt_tokens", "prefill_left", "decode_left", "context", "future", "cached", "blocks")

    def __init__(self, prompt_tokens: int, decode: int, blocks: list[bytes], future: asyncio.Future) -> None:
        self.prompt_tokens = prompt_tokens
        self.prefill_left = prompt_tokens
        self.decode_left = max(1, decode)
        self.context = prompt_tokens
        self.blocks = blocks
        self.future = future
        self.cached = 0


class Engine:
    """The simulated scheduler: one loop, steps on a deadline clock."""

    def __init__(self, cost: CostModel, stats: Stats) -> None:
        self.cost = cost
        self.stats = stats
        self.waiting: collections.deque[_Seq] = collections.deque()
        self.running: list[_Seq] = []
        self.cache: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.arrived = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def block_keys(self, text: str) -> list[bytes]:
        """Chained hashes of the prompt's full blocks (a block's key covers all before it)."""
        if not self.cost.prefix_caching:
            return []
        width = self.cost.block_size * CHARS_PER_TOKEN
        keys, previous = [], b""
        for start in range(0, len(text) - width + 1, width):
            previous = hashlib.blake2b(previous + text[start : start + width].encode(), digest_size=12).digest()
            keys.append(previous)
        return keys

    async def run(self, prompt: str, decode_tokens: int) -> tuple[int, int]:
        """Queue one sequence; returns (prompt tokens, cached prompt tokens) once it finished."""
        future = asyncio.get_running_loop().create_future()
        seq = _Seq(tokens_of(prompt), decode_tokens, self.block_keys(prompt), future)
        self.waiting.append(seq)
        self.stats.max_waiting = max(self.stats.max_waiting, len(self.waiting))
        self.arrived.set()
        await future
        return seq.prompt_tokens, seq.cached

    def _admit(self) -> None:
        cost = self.cost
        while self.waiting and len(self.running) < cost.max_num_seqs:
            seq = self.waiting.popleft()
            hit = 0
            for key in seq.blocks:
                if key in self.cache:
                    hit += 1
                    self.cache.move_to_end(key)
                else:
                    break
            for key in seq.blocks[hit:]:  # scheduled blocks are cached at once, as in vLLM V1
                self.cache[key] = None
            capacity = max(1, cost.kv_cache_tokens // cost.block_size)
            while len(self.cache) > capacity:
                self.cache.popitem(last=False)
            # vLLM always computes at least the last prompt token
            seq.cached = min(hit * cost.block_size, seq.prompt_tokens - 1)
            seq.prefill_left = seq.prompt_tokens - seq.cached
            self.stats.sequences += 1
            self.stats.prompt_tokens += seq.prompt_tokens
            self.stats.cached_tokens += seq.cached
            self.running.append(seq)
        self.stats.max_running = max(self.stats.max_running, len(self.running))

    def _finish(self) -> None:
        still = []
        for seq in self.running:
            if seq.decode_left <= 0 and seq.prefill_left == 0:
                if not seq.future.done():
                    seq.future.set_result(None)
            else:
                still.append(seq)
        self.running = still

    async def _sleep_until(self, deadline: float, interruptible: bool) -> bool:
        """Sleep to ``deadline`` (monotonic); True when an arrival cut it short."""
        delay = deadline - time.monotonic()
        if delay <= 0:
            return False
        if not interruptible:
            await asyncio.sleep(delay)
            return False
        self.arrived.clear()
        try:
            await asyncio.wait_for(self.arrived.wait(), delay)
            return True
        except asyncio.TimeoutError:
            return False

    async def _loop(self) -> None:
        cost, stats = self.cost, self.stats
        clock = time.monotonic()
        while True:
            if not self.waiting and not self.running:
                self.arrived.clear()
                await self.arrived.wait()
                clock = max(clock, time.monotonic())
            self._admit()
            decoding = [s for s in self.running if s.prefill_left == 0]
            prefilling = [s for s in self.running if s.prefill_left > 0]
            kv_tokens = sum(s.context for s in decoding)
            step = cost.step_time_s + cost.kv_read_s_per_token * kv_tokens
            if prefilling:
                budget = cost.max_num_batched_tokens - len(decoding)
                chunk_total = 0
                done_prefill = []
                for seq in prefilling:
                    if budget <= 0:
                        break
                    chunk = min(seq.prefill_left, budget)
                    seq.prefill_left -= chunk
                    budget -= chunk
                    chunk_total += chunk
                    if seq.prefill_left == 0:
                        done_prefill.append(seq)
                dt = (step + chunk_total / cost.prefill_tokens_per_s) * cost.time_scale
                await self._sleep_until(clock + dt, interruptible=False)
                clock += dt
                stats.busy_s += dt
                stats.steps += 1
                for seq in decoding:
                    seq.decode_left -= 1
                    seq.context += 1
                for seq in done_prefill:  # the step that ends a prefill samples its first token
                    seq.decode_left -= 1
                    seq.context += 1
                stats.decode_tokens += len(decoding) + len(done_prefill)
            else:
                k = min(s.decode_left for s in decoding)
                dt = step * cost.time_scale
                woke = await self._sleep_until(clock + k * dt, interruptible=True)
                steps = k
                if woke:
                    steps = min(k, int((time.monotonic() - clock) / dt))
                clock += steps * dt
                stats.busy_s += steps * dt
                stats.steps += steps
                for seq in decoding:
                    seq.decode_left -= steps
                    seq.context += steps
                stats.decode_tokens += steps * len(decoding)
            self._finish()
            if not self.running and not self.waiting:
                clock = max(clock, time.monotonic())


# --- what the judge says ------------------------------------------------------------------------

# Token ids of the answer words: one token each, as on vLLM (the service checks this through /tokenize).
WORDS = ["yes", "Yes", " yes", " Yes", "no", "No", " no", " No"]
WORD_ID = {w: 1_000_000 + i for i, w in enumerate(WORDS)}
ID_WORD = {i: w for w, i in WORD_ID.items()}
FILLER = (
    "the reference states the key facts and explains the reasoning step by step so that a reader can "
    "check each claim against the responses and see why the final answer follows from them"
).split()


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest(), "big")


def draw_length(cost: CostModel, max_tokens: int, *seed_parts: str) -> int:
    rng = random.Random(_seed(*seed_parts))
    length = round(cost.gen_median_tokens * math.exp(rng.gauss(0.0, cost.gen_sigma)))
    return max(1, min(int(max_tokens or 16), length))


def text_of(tokens: int, seed: int) -> str:
    rng = random.Random(seed)
    words, size = [], 0
    while size < tokens * CHARS_PER_TOKEN:
        word = rng.choice(FILLER)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[: tokens * CHARS_PER_TOKEN].strip() + "."


def _criteria_wanted(text: str) -> int:
    marker = text.find("Write between ")
    if marker >= 0:
        parts = text[marker + len("Write between ") :].split()
        try:
            return int(parts[2])  # "between {min} and {max} criteria"
        except (IndexError, ValueError):
            pass
    return 8


def _criteria(count: int, seed: int, tokens: int) -> list[str]:
    per = max(4, tokens // max(1, count))
    return [f"Criterion {i + 1} ({seed % 100_000:05d}): the response " + text_of(per, seed + i) for i in range(count)]


def chatml(messages: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def tokenize(text: str) -> list[int]:
    """The stand-in tokenizer of /tokenize: one token per character, the answer words one token."""
    return [WORD_ID[text]] if text in WORD_ID else [ord(c) for c in text]


def p_yes(prompt: str) -> float:
    return 0.05 + 0.9 * (_seed(prompt) % 1000) / 1000


class SimJudge:
    def __init__(self, cost: CostModel, model: str = MODEL) -> None:
        self.cost = cost
        self.model = model
        self.stats = Stats()
        self.engine = Engine(cost, self.stats)

    def count(self, request: web.Request) -> None:
        path = request.path
        self.stats.requests[path] = self.stats.requests.get(path, 0) + 1
        if request.headers.get("X-Session-ID"):
            self.stats.session_ids += 1

    async def health(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.Response(text="")

    async def version(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.json_response({"version": "0.0.0-simjudge"})

    async def models(self, request: web.Request) -> web.Response:
        self.count(request)
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "simjudge"}]})

    async def get_stats(self, request: web.Request) -> web.Response:
        body = asdict(self.stats)
        body["running"] = len(self.engine.running)
        body["waiting"] = len(self.engine.waiting)
        body["cost_model"] = asdict(self.cost)
        return web.json_response(body)

    async def do_tokenize(self, request: web.Request) -> web.Response:
        self.count(request)
        body = await request.json()
        text = chatml(body["messages"]) if "messages" in body else body["prompt"]
        tokens = tokenize(text)
        return web.json_response({"count": len(tokens), "max_model_len": 1 << 20, "tokens": tokens})

    async def do_detokenize(self, request: web.Request) -> web.Response:
        self.count(request)
        body = await request.json()
        return web.json_response({"prompt": "".join(ID_WORD.get(t) or chr(t) for t in body["tokens"])})

    def _check_model(self, body: dict) -> web.Response | None:
        if body.get("model") not in (None, self.model):
            return web.json_response(
                {"error": {"message": f"The model `{body.get('model')}` does not exist.", "type": "NotFoundError", "code": 404}},
                status=404,
            )
        return None

    async def completions(self, request: web.Request) -> web.Response:
        self.count(request)
        body = await request.json()
        if (bad := self._check_model(body)) is not None:
            return bad
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        max_tokens = int(body.get("max_tokens") or 16)
        decode = [1 if max_tokens == 1 else draw_length(self.cost, max_tokens, p) for p in prompts]
        done = await asyncio.gather(*(self.engine.run(p, d) for p, d in zip(prompts, decode)))
        allowed = [ID_WORD.get(i) for i in body.get("allowed_token_ids") or []]
        choices = []
        for i, prompt in enumerate(prompts):
            if max_tokens != 1 or not allowed:
                text = text_of(decode[i], _seed(prompt))
                choices.append({"index": i, "text": text, "logprobs": None, "finish_reason": "length"})
                continue
            py = p_yes(prompt)
            yes = next((w for w in allowed if w.strip().lower() == "yes"), allowed[0])
            no = next((w for w in allowed if w.strip().lower() == "no"), allowed[-1])
            top = {yes: math.log(py), no: math.log(1 - py)}
            token = yes if py >= 0.5 else no
            k = int(body.get("logprobs") or 0)
            shown = dict(top) if body.get("logprob_token_ids") else dict(list(sorted(top.items(), key=lambda kv: -kv[1]))[: max(k, 1)])
            shown.setdefault(token, top[token])
            choices.append({
                "index": i,
                "text": token,
                "logprobs": {"text_offset": [0], "token_logprobs": [top[token]], "tokens": [token], "top_logprobs": [shown]},
                "finish_reason": "length",
                "stop_reason": None,
            })
        usage = {
            "prompt_tokens": sum(t for t, _ in done),
            "completion_tokens": sum(decode),
            "total_tokens": sum(t for t, _ in done) + sum(decode),
            "prompt_tokens_details": {"cached_tokens": sum(c for _, c in done)},
        }
        return web.json_response(
            {"id": "cmpl-sim", "object": "text_completion", "created": int(time.time()), "model": self.model,
             "choices": choices, "usage": usage}
        )

    async def chat(self, request: web.Request) -> web.Response:
        self.count(request)
        body = await request.json()
        if (bad := self._check_model(body)) is not None:
            return bad
        messages = body.get("messages") or []
        prompt = chatml(messages)
        system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
        user = messages[-1]["content"] if messages else ""
        max_tokens = int(body.get("max_tokens") or 256)
        seed = _seed(prompt)
        choice = (body.get("structured_outputs") or {}).get("choice")
        if "reconcile" in system and "rubric" in system:  # fused synthesis + rubric
            decode = draw_length(self.cost, max_tokens, prompt, "fused")
            text = json.dumps({"reference": text_of(decode // 2, seed), "criteria": _criteria(_criteria_wanted(user), seed, decode // 2)})
        elif "rubric" in system:
            decode = draw_length(self.cost, max_tokens, prompt, "rubric")
            text = json.dumps({"criteria": _criteria(_criteria_wanted(user), seed, decode)})
        elif choice or "grader" in system:  # a verdict through chat
            decode, text = 1, (choice[0] if choice else "yes")
        else:
            decode = draw_length(self.cost, max_tokens, prompt, "synthesis")
            text = text_of(decode, seed)
        prompt_tokens, cached = await self.engine.run(prompt, decode)
        top = None
        if body.get("logprobs"):
            top = {"content": [{"token": text.split()[0] if text.split() else text, "logprob": -0.1, "top_logprobs": []}]}
        return web.json_response({
            "id": "chatcmpl-sim",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": top,
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": decode, "total_tokens": prompt_tokens + decode,
                      "prompt_tokens_details": {"cached_tokens": cached}},
        })

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/stats", self.get_stats)
        app.router.add_post("/tokenize", self.do_tokenize)
        app.router.add_post("/detokenize", self.do_detokenize)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/chat/completions", self.chat)

        async def on_startup(_app):
            self.engine.start()

        async def on_cleanup(_app):
            await self.engine.stop()

        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
        return app


def add_cost_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = CostModel()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=value,
                                help=f"(default {value})")
        else:
            parser.add_argument(flag, type=type(value), default=value, help=f"(default {value})")


def cost_from(args: argparse.Namespace) -> CostModel:
    return CostModel(**{name: getattr(args, name) for name in asdict(CostModel())})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback only (127.0.0.0/8)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default=MODEL)
    add_cost_arguments(parser)
    args = parser.parse_args(argv)
    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.0.0.0/8)")
    judge = SimJudge(cost_from(args), model=args.model)
    web.run_app(judge.app(), host=args.host, port=args.port, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
