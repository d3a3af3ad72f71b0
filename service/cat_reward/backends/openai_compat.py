"""An OpenAI-compatible chat client (vLLM's server, OpenAI, llama.cpp, ...) for one role.

One pooled HTTP client (aiohttp's, or httpx's: ``CAT_LLM_HTTP_CLIENT``) is shared by every role. A role may list several endpoints
(replicas of one model); requests go round-robin and a failed attempt moves to the next one.
Transport errors, timeouts, 429 and 5xx are retried with jittered exponential backoff
(honouring Retry-After); after the last try they become ``LLMUnavailable``. A 400/413/422
becomes ``LLMRequestRejected`` with the backend's own message (typically: the prompt does not
fit the context).

What a backend can do (force JSON with a schema, force one of a few choices, return logprobs)
is configured per role, or detected once (``kind="auto"``: vLLM answers ``GET /version``);
it is never assumed.

Requests go to the role's endpoints through an ``EndpointPool`` (``endpoints``): least
outstanding prompts, a circuit breaker per endpoint, a bounded number of prompts in flight per
endpoint with a FIFO wait beyond it, and optional group affinity. Every call of a group carries
the group's key (``ChatRequest.session``, ``score_yes_no(session=...)``) in the
``CAT_LLM_SESSION_HEADER`` header (``X-Session-ID``), so a router in front (vllm-router's
``consistent_hash`` / ``sticky_least_loaded``) keeps a group on one judge's prefix cache.

On vLLM the client can also score many yes/no verdicts in one request (``score_yes_no``): the
prompts, each a conversation rendered with the model's own chat template (see
``chat_template``), go as one list to ``/v1/completions`` with ``max_tokens: 1``, the token
restricted to the answer words the chat path forces (``allowed_token_ids`` of "yes" and "no",
each one token) and their logprobs returned (``logprob_token_ids``, else top-k; OpenAI legacy
format). Measured on the CPU judge, the verdicts and P(yes) equal the chat path's (same
prompt tokens, same two allowed answers). Verdicts from concurrent groups are coalesced into
shared batches (``coalescer``). Every part of that path is probed once before use; whatever
fails the probe makes ``yes_no_scoring()`` false, and the engine asks through the chat endpoint.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
import random
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Literal

import httpx

from ..engine.errors import LLMBadResponse, LLMRequestRejected, LLMUnavailable
from ..engine.types import frozen_constructor
from ..engine.ports import ChatRequest, ChatResult, ScoringUnavailable, YesNoScore
from .chat_template import CHECK_CONTENT, TemplateMismatch, TemplateSkeleton, probe_messages, sentinels
from .coalescer import Coalescer
from .endpoints import EndpointPool
from ..metrics import JUDGE_OUTSTANDING_REQUESTS, JUDGE_QUEUE_DEPTH
from .aiohttp_pool import AiohttpHTTP
from .http_pool import PooledHTTP

log = logging.getLogger(__name__)


BackendKind = Literal["auto", "vllm", "openai", "generic"]
# (role, stage, outcome "ok"/"error", latency_s, prompt_tokens, completion_tokens) of each scoring
# request: a batch is one backend call, whatever number of groups it served.
BatchObserver = Callable[[str, str, str, float, int, int], None]
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
REJECTED_STATUS = {400, 413, 422}
DEFAULT_CHOICES = ("yes", "no")  # the engine's verdict words (engine.judge.YES_NO)
PROBE_PROMPT = "Is the sky blue? Answer yes or no.\nAnswer:"
TEMPLATE_TTL_S = 3600.0  # re-probe a chat template hourly (templates that print the date)


@dataclass(frozen=True)
class Capabilities:
    kind: str
    json_schema: bool  # response_format {"type": "json_schema"} is honoured
    choice: bool  # vLLM's structured_outputs {"choice": [...]} is honoured
    logprobs: bool  # chat logprobs/top_logprobs are returned
    # /v1/completions takes a list of prompts and returns legacy logprobs, /tokenize and
    # /detokenize apply the chat template, allowed_token_ids restricts a token: batched scoring.
    completions_scoring: bool = False


CAPABILITIES: dict[str, Capabilities] = {
    "vllm": Capabilities("vllm", json_schema=True, choice=True, logprobs=True, completions_scoring=True),
    "openai": Capabilities("openai", json_schema=True, choice=False, logprobs=True),
    "generic": Capabilities("generic", json_schema=False, choice=False, logprobs=True),
}


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])[:500]
        if isinstance(body.get("detail"), str):
            return body["detail"][:500]
    return str(body)[:500]


def _server_root(base: str) -> str:
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class OpenAICompatClient:
    """Implements ``cat_reward.engine.ports.LLMClient`` over HTTP."""

    def __init__(
        self,
        *,
        role: str,
        model: str,
        base_urls: list[str],
        http: httpx.AsyncClient | PooledHTTP | AiohttpHTTP,  # anything with httpx.AsyncClient's get/post
        api_key: str | None = None,
        kind: BackendKind = "auto",
        max_retries: int = 2,
        max_inflight: int = 64,
        endpoint_max_prompts: int = 512,
        affinity: bool = False,
        session_header: str | None = "X-Session-ID",
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 8.0,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 10.0,
        yes_no_scoring: bool = True,
        score_batch_size: int = 128,
        score_batch_wait_s: float = 0.005,
        score_max_inflight: int = 4,
        score_top_logprobs: int = 20,
        observe_batch: BatchObserver | None = None,
    ) -> None:
        if not base_urls:
            raise ValueError(f"{role}: at least one base URL is needed")
        self.role = role
        self.model = model
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self._http = http
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._kind = kind
        self._capabilities: Capabilities | None = None if kind == "auto" else CAPABILITIES[kind]
        self._detect_lock = asyncio.Lock()
        self._max_retries = max_retries
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._session_header = session_header or None
        # Per endpoint: at most ``max_inflight`` requests and ``endpoint_max_prompts`` prompts in
        # flight (the rest wait in arrival order), least outstanding first, and a circuit breaker:
        # after ``breaker_failures`` failed attempts in a row an endpoint is skipped for
        # ``breaker_cooldown_s``. With every endpoint open a call fails at once (503 with
        # Retry-After) instead of piling timeouts onto a dead backend.
        self._queue_gauge = JUDGE_QUEUE_DEPTH.labels(role=role)
        self._outstanding_gauges = [JUDGE_OUTSTANDING_REQUESTS.labels(role=role, endpoint=u) for u in self.base_urls]
        self._published_queue = 0
        self._published_outstanding = [0] * len(self.base_urls)
        self._pool = EndpointPool(
            role,
            self.base_urls,
            max_requests=max_inflight,
            max_prompts=endpoint_max_prompts,
            breaker_failures=breaker_failures,
            breaker_cooldown_s=breaker_cooldown_s,
            affinity=affinity,
            on_change=self._publish,
        )
        # single-token yes/no scoring
        self._scoring_wanted = yes_no_scoring
        self._scoring_ok: bool | None = None  # None: not probed yet
        self._scoring_lock = asyncio.Lock()
        self._choice_token_ids: dict[tuple[str, ...], tuple[int, ...]] = {}
        self._logprob_mode = "top_k"  # or "token_ids": see _probe_scoring
        self._skeletons: dict[tuple[str, ...], tuple[TemplateSkeleton | None, float]] = {}
        self._template_lock = asyncio.Lock()
        self._score_top_logprobs = score_top_logprobs
        self._observe_batch = observe_batch
        self._batch_ids = itertools.count(1)
        # ``score_max_inflight`` batches per endpoint: more endpoints, more batches in flight.
        self._coalescer: Coalescer = Coalescer(
            self._send_batch,
            max_batch=score_batch_size,
            max_wait_s=score_batch_wait_s,
            max_inflight=score_max_inflight * len(self.base_urls),
            on_change=self._publish,
        )
        self._publish()

    def _publish(self) -> None:
        """The autoscaling gauges: prompts waiting here (for a verdict batch slot or for room at an
        endpoint), and requests in flight at each endpoint."""
        # By increments: several clients may share a role's labels (a judge ensemble's members).
        coalescer = getattr(self, "_coalescer", None)
        queued = self._pool.waiting_prompts + (coalescer.waiting if coalescer is not None else 0)
        if queued != self._published_queue:
            self._queue_gauge.inc(queued - self._published_queue)
            self._published_queue = queued
        for i, outstanding in enumerate(self._pool.requests):
            if outstanding != self._published_outstanding[i]:
                self._outstanding_gauges[i].inc(outstanding - self._published_outstanding[i])
                self._published_outstanding[i] = outstanding

    @property
    def pool(self) -> EndpointPool:
        return self._pool

    async def check_endpoints(self, timeout_s: float = 5.0) -> list[str]:
        """At start: every endpoint that cannot be reached is named in the log and routed around
        (its breaker opened) until it answers. Returns the unreachable URLs."""

        async def one(index: int, base: str) -> str | None:
            try:
                await self._http.get(f"{base}/models", headers=self._headers, timeout=timeout_s)
            except httpx.HTTPError as exc:
                log.warning(
                    "%s endpoint %s is unreachable at start (%s): routed around it until it answers",
                    self.role, base, type(exc).__name__,
                )
                self._pool.mark_down(index, "unreachable at start")
                return base
            return None

        found = await asyncio.gather(*[one(i, b) for i, b in enumerate(self.base_urls)])
        return [u for u in found if u is not None]

    # -- capabilities -------------------------------------------------------------------
    async def capabilities(self) -> Capabilities:
        if self._capabilities is not None:
            return self._capabilities
        async with self._detect_lock:
            if self._capabilities is None:
                self._capabilities = await self._detect()
        return self._capabilities

    async def _detect(self) -> Capabilities:
        last_error: Exception | None = None
        for base in self.base_urls:
            root = _server_root(base)
            try:
                response = await self._http.get(f"{root}/version", headers=self._headers, timeout=5.0)
            except httpx.HTTPError as exc:
                last_error = exc
                continue
            if response.status_code == 200:
                try:
                    is_vllm = isinstance(response.json(), dict) and "version" in response.json()
                except ValueError:
                    is_vllm = False
                caps = CAPABILITIES["vllm" if is_vllm else "generic"]
            else:
                caps = CAPABILITIES["generic"]
            log.info("%s backend at %s detected as %s", self.role, base, caps.kind)
            return caps
        raise LLMUnavailable(f"{self.role} backend unreachable at {self.base_urls}: {last_error}", role=self.role)

    # -- chat ---------------------------------------------------------------------------
    async def chat(self, request: ChatRequest) -> ChatResult:
        caps = await self.capabilities()
        body: dict = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.seed is not None:
            body["seed"] = request.seed
        forced = False
        if request.json_schema is not None and caps.json_schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": f"{request.stage}_output", "schema": request.json_schema},
            }
            forced = True
        if request.choices and caps.choice:
            body["structured_outputs"] = {"choice": list(request.choices)}
            forced = True
        if request.top_logprobs and caps.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = min(request.top_logprobs, 20)
        started = time.perf_counter()
        data = await self._post("/chat/completions", body, session=request.session)
        return self._parse(data, forced=forced, latency_s=time.perf_counter() - started)

    def _parse(self, data: dict, *, forced: bool, latency_s: float) -> ChatResult:
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            top: list[dict[str, float]] | None = None
            content = (choice.get("logprobs") or {}).get("content")
            if content:
                top = []
                for position in content:
                    alternatives = {alt["token"]: alt["logprob"] for alt in position.get("top_logprobs") or []}
                    alternatives.setdefault(position["token"], position["logprob"])
                    top.append(alternatives)
            return ChatResult(
                text=text,
                model=data.get("model", self.model),
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                latency_s=latency_s,
                top_logprobs=top,
                forced=forced,
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LLMBadResponse(f"{self.role} backend sent an unreadable completion: {exc!r}", role=self.role) from exc

    async def _post(
        self, path: str, body: dict, *, root: bool = False, weight: int = 1, session: str | None = None
    ) -> dict:
        """POST to ``<base>/v1<path>`` (or ``<server root><path>`` with ``root``), retried, on an
        endpoint from the pool (``weight``: the prompts the request carries; ``session``: the
        group key, sent in the session header and used for affinity)."""
        headers = self._headers
        if session and self._session_header:
            headers = {**self._headers, self._session_header: session}
        last_problem = "no attempt made"
        retry_after: float | None = None
        last_index: int | None = None
        for attempt in range(self._max_retries + 1):
            try:
                index = await self._pool.acquire(weight, key=session, avoid=last_index)
            except LLMUnavailable as exc:
                raise LLMUnavailable(
                    f"{exc.message} (last problem: {last_problem})", role=self.role, retry_after=exc.retry_after
                ) from None
            last_index = index
            base = self.base_urls[index]
            url = (_server_root(base) if root else base) + path
            alive: bool | None = None
            try:
                try:
                    response = await self._http.post(url, json=body, headers=headers)
                except httpx.TimeoutException as exc:
                    last_problem = f"timed out ({type(exc).__name__}) at {base}"
                    alive = False
                except httpx.TransportError as exc:
                    last_problem = f"unreachable at {base}: {exc!r}"
                    alive = False
                else:
                    status = response.status_code
                    alive = status not in RETRYABLE_STATUS  # it answered: the endpoint is alive
                    if status == 200:
                        try:
                            return response.json()
                        except ValueError as exc:
                            raise LLMBadResponse(
                                f"{self.role} backend at {base} sent invalid JSON", role=self.role
                            ) from exc
                    message = _error_message(response)
                    if status in REJECTED_STATUS:
                        raise LLMRequestRejected(
                            f"{self.role} backend rejected the request ({status}): {message}", role=self.role
                        )
                    if status not in RETRYABLE_STATUS:
                        raise LLMBadResponse(
                            f"{self.role} backend at {base} answered {status}: {message}", role=self.role
                        )
                    last_problem = f"answered {status} at {base}: {message}"
                    retry_after = _retry_after(response)
            finally:
                self._pool.release(index, weight, ok=alive)
            if attempt < self._max_retries:
                delay = random.uniform(0, min(self._backoff_max_s, self._backoff_base_s * 2**attempt))
                if retry_after is not None:
                    delay = max(delay, min(retry_after, self._backoff_max_s))
                await asyncio.sleep(delay)
        raise LLMUnavailable(
            f"{self.role} backend failed after {self._max_retries + 1} attempt(s): {last_problem}",
            role=self.role,
            retry_after=retry_after,
        )

    # -- token counting (length control) -------------------------------------------------
    async def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text with this model's tokenizer, from vLLM's ``/tokenize`` (no special
        tokens). ``TokenizerUnavailable`` when the backend is not vLLM (no ``/tokenize``)."""
        from ..engine.ports import TokenizerUnavailable

        caps = await self.capabilities()
        if not caps.completions_scoring:  # the vLLM-only endpoints: /tokenize is one of them
            raise TokenizerUnavailable(
                f"the {self.role} backend ({caps.kind}) has no /tokenize to count tokens with; "
                "name a tokenizer in options.length_penalty.tokenizer (or CAT_LENGTH_PENALTY_TOKENIZER)"
            )

        async def one(text: str) -> int:
            body = {"model": self.model, "prompt": text, "add_special_tokens": False}
            try:
                data = await self._post("/tokenize", body, root=True)
                tokens = data.get("tokens")
                return len(tokens) if isinstance(tokens, list) else int(data["count"])
            except (LLMBadResponse, LLMRequestRejected, KeyError, TypeError, ValueError) as exc:
                # The judge answered, but not with a token count: counting is impossible here,
                # not the judge being down (that stays LLMUnavailable, a 503).
                raise TokenizerUnavailable(
                    f"the {self.role}'s /tokenize did not count tokens ({getattr(exc, 'message', exc)!s}); "
                    "name a tokenizer in options.length_penalty.tokenizer (or CAT_LENGTH_PENALTY_TOKENIZER)"
                ) from None

        return list(await asyncio.gather(*(one(t) for t in texts)))

    # -- single-token yes/no scoring ----------------------------------------------------
    async def yes_no_scoring(self) -> bool:
        """Can verdicts go through ``score_yes_no``? Needs a backend configured or detected as
        vLLM, and a one-time probe to pass: the answer words are single tokens, and a one-prompt
        batch comes back in the expected shape. A backend that is down is probed again later."""
        if not self._scoring_wanted:
            return False
        if self._scoring_ok is not None:
            return self._scoring_ok
        try:
            caps = await self.capabilities()
        except LLMUnavailable:
            return False
        if not caps.completions_scoring:
            self._scoring_ok = False
            return False
        async with self._scoring_lock:
            if self._scoring_ok is None:
                try:
                    self._scoring_ok = await self._probe_scoring()
                except LLMUnavailable as exc:
                    log.info("%s: single-token scoring not probed yet (%s)", self.role, exc)
                    return False
        return self._scoring_ok

    async def _choice_ids(self, choices: tuple[str, ...]) -> tuple[int, ...]:
        """The token id of each answer word; ``ScoringUnavailable`` unless each is one token."""
        if choices not in self._choice_token_ids:
            ids = []
            for word in choices:
                body = {"model": self.model, "prompt": word, "add_special_tokens": False}
                tokens = (await self._post("/tokenize", body, root=True))["tokens"]
                if len(tokens) != 1:
                    raise ScoringUnavailable(f"{word!r} is {len(tokens)} tokens for {self.model}, not one")
                ids.append(int(tokens[0]))
            self._choice_token_ids[choices] = tuple(ids)
        return self._choice_token_ids[choices]

    async def _probe_scoring(self) -> bool:
        try:
            await self._choice_ids(DEFAULT_CHOICES)
            # The exact request shape scoring will use, on a prompt that needs no template. First
            # with the answer tokens' logprobs asked by id (exact, whatever their rank), else (a
            # vLLM without ``logprob_token_ids``) with the top-k alternatives.
            for mode in ("token_ids", "top_k"):
                self._logprob_mode = mode
                [probe] = await self._score_batch_once(("probe", 0.0, None, DEFAULT_CHOICES), [PROBE_PROMPT])
                if isinstance(probe, YesNoScore) and probe.text in DEFAULT_CHOICES:
                    if set(DEFAULT_CHOICES) <= probe.top_logprobs.keys() or (mode == "top_k" and probe.top_logprobs):
                        break
            else:
                raise ScoringUnavailable(f"the probe batch came back without usable logprobs: {probe!r}")
        except (LLMBadResponse, LLMRequestRejected, ScoringUnavailable, KeyError, TypeError, ValueError) as exc:
            log.warning("%s: single-token yes/no scoring unavailable, verdicts use chat completions (%s)", self.role, exc)
            return False
        log.info("%s: single-token yes/no scoring on (logprobs by %s)", self.role, self._logprob_mode)
        return True

    async def render_prompts(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        """Each conversation rendered as the backend's chat endpoint would (its chat template,
        with the generation prompt). Raises ``ScoringUnavailable`` when that cannot be reproduced."""
        if not conversations:
            return []
        # The common case: every conversation has the first one's roles (a group's verdicts).
        first = await self._skeleton(tuple(m["role"] for m in conversations[0]))
        rendered = first.render_many(conversations)
        if None in rendered:
            for i, text in enumerate(rendered):
                if text is None:
                    messages = conversations[i]
                    rendered[i] = (await self._skeleton(tuple(m["role"] for m in messages))).render(messages)
        return rendered  # type: ignore[return-value]

    async def _skeleton(self, roles: tuple[str, ...]) -> TemplateSkeleton:
        entry = self._skeletons.get(roles)
        if entry is None or entry[1] < time.monotonic():
            async with self._template_lock:
                entry = self._skeletons.get(roles)
                if entry is None or entry[1] < time.monotonic():
                    entry = (await self._probe_template(roles), time.monotonic() + TEMPLATE_TTL_S)
                    self._skeletons[roles] = entry
        if entry[0] is None:
            raise ScoringUnavailable(f"the {self.role} chat template for roles {roles} cannot be reproduced")
        return entry[0]

    async def _probe_template(self, roles: tuple[str, ...]) -> TemplateSkeleton | None:
        """Derive the template's fixed pieces from a sentinel conversation, then check that a
        conversation with awkward content renders to the same tokens both ways."""

        async def chat_tokens(messages: list[dict[str, str]]) -> list[int]:
            body = {"model": self.model, "messages": messages, "add_generation_prompt": True}
            return (await self._post("/tokenize", body, root=True))["tokens"]

        try:
            marks = sentinels(len(roles))
            tokens = await chat_tokens(probe_messages(roles, marks))
            text = (await self._post("/detokenize", {"model": self.model, "tokens": tokens}, root=True))["prompt"]
            skeleton = TemplateSkeleton.from_rendering(roles, text, marks)
            check = probe_messages(roles, [f"{CHECK_CONTENT}({i})" for i in range(len(roles))])
            expected = await chat_tokens(check)
            for candidate in (skeleton, skeleton.stripping()):
                body = {"model": self.model, "prompt": candidate.render(check), "add_special_tokens": False}
                if (await self._post("/tokenize", body, root=True))["tokens"] == expected:
                    return candidate
            raise TemplateMismatch("the locally rendered check conversation tokenizes differently")
        except (LLMBadResponse, LLMRequestRejected, TemplateMismatch, KeyError, TypeError, ValueError) as exc:
            log.warning("%s: cannot reproduce the chat template for roles %s: %s", self.role, roles, exc)
            return None

    async def score_yes_no(
        self,
        prompts: list[str],
        *,
        stage: str = "verdict",
        temperature: float = 0.0,
        seed: int | None = None,
        choices: tuple[str, ...] = DEFAULT_CHOICES,
        session: str | None = None,
    ) -> list[YesNoScore]:
        """One generated token per rendered prompt, restricted to ``choices`` (each a single
        token), with the choices' logprobs. The prompts join the shared batches of every
        concurrent caller with the same sampling parameters; a batch carries the group key
        (``session``) of the group with the most prompts in it."""
        if not await self.yes_no_scoring():
            raise ScoringUnavailable(f"{self.role} backend has no single-token scoring")
        await self._choice_ids(choices)
        key = (stage, float(temperature), seed if temperature > 0 else None, choices)  # greedy: the seed is moot
        return await self._coalescer.submit(key, [(prompt, session) for prompt in prompts])

    async def _send_batch(self, key: tuple, items: list[tuple[str, str | None]]) -> list:
        sessions = Counter(session for _, session in items if session)
        session = sessions.most_common(1)[0][0] if sessions else None
        return await self._score_batch_once(key, [prompt for prompt, _ in items], session=session)

    async def _score_batch_once(self, key: tuple, prompts: list[str], session: str | None = None) -> list:
        """One /v1/completions request for ``prompts``; per prompt a ``YesNoScore`` or the error
        for that prompt. A rejected batch is split in halves until the rejected prompts are found
        (a prompt too long for the context must not fail the other groups in its batch)."""
        stage, temperature, seed, choices = key
        ids = list(self._choice_token_ids[choices])
        body = {
            "model": self.model,
            "prompt": prompts,
            "max_tokens": 1,
            "temperature": temperature,
            "add_special_tokens": False,  # the chat template already holds any BOS, as in chat
            # The same answers the chat path forces with structured_outputs {"choice": ...}: the
            # token and P(yes) come out equal to a chat verdict's, one token instead of a call.
            "allowed_token_ids": ids,
        }
        if self._logprob_mode == "token_ids":
            body["logprobs"] = 0  # the generated token, plus each choice by id
            body["logprob_token_ids"] = ids
        else:
            body["logprobs"] = self._score_top_logprobs
        if seed is not None:
            body["seed"] = seed
        started = time.perf_counter()
        try:
            data = await self._post("/completions", body, weight=len(prompts), session=session)
        except LLMRequestRejected as exc:
            self._observe(stage, "error", time.perf_counter() - started, 0, 0)
            if len(prompts) == 1:
                return [exc]
            half = len(prompts) // 2
            return await self._score_batch_once(key, prompts[:half], session) + await self._score_batch_once(
                key, prompts[half:], session
            )
        except BaseException:
            self._observe(stage, "error", time.perf_counter() - started, 0, 0)
            raise
        usage = (data.get("usage") if isinstance(data, dict) else None) or {}
        self._observe(
            stage, "ok", time.perf_counter() - started,
            int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
        )
        return self._parse_scores(data, prompts, choices)

    def _observe(self, stage: str, outcome: str, latency_s: float, prompt_tokens: int, completion_tokens: int) -> None:
        if self._observe_batch is not None and stage != "probe":
            try:
                self._observe_batch(self.role, stage, outcome, latency_s, prompt_tokens, completion_tokens)
            except Exception:  # noqa: BLE001 - metrics must never fail a request
                log.exception("batch observer failed")

    def _parse_scores(self, data: dict, prompts: list[str], answers: tuple[str, ...]) -> list[YesNoScore]:
        batch_id = f"{self.role}-{next(self._batch_ids)}"
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            if len(choices) != len(prompts):
                raise ValueError(f"{len(choices)} choices for {len(prompts)} prompts")
            usage = data.get("usage") or {}
            shares = _apportion(int(usage.get("prompt_tokens") or 0), [len(p) for p in prompts])
            scores = []
            model = data.get("model", self.model)
            top_k = self._logprob_mode == "top_k"
            for choice, prompt_tokens in zip(choices, shares):
                text = choice.get("text") or ""
                top = _first_position(choice.get("logprobs"), text)
                if top_k:  # keep what the chat path's P(yes) sees: the choices
                    top = {t: v for t, v in top.items() if t in answers or t == text}
                scores.append(_score(text, top, model, prompt_tokens, 1 if text else 0, batch_id))
            return scores
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise LLMBadResponse(f"{self.role} backend sent unreadable completions logprobs: {exc!r}", role=self.role) from exc

    # -- readiness ----------------------------------------------------------------------
    async def probe(self) -> dict:
        """Is the model served at each endpoint? Used by /readyz."""
        endpoints = []
        for base in self.base_urls:
            entry: dict = {"url": base, "ok": False}
            try:
                response = await self._http.get(f"{base}/models", headers=self._headers, timeout=5.0)
                if response.status_code != 200:
                    entry["error"] = f"GET /models answered {response.status_code}"
                else:
                    served = [m.get("id") for m in response.json().get("data", [])]
                    entry["ok"] = self.model in served
                    if not entry["ok"]:
                        entry["error"] = f"model {self.model!r} not served (serving {served})"
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                entry["error"] = f"unreachable: {exc!r}"
            endpoints.append(entry)
        ok = any(e["ok"] for e in endpoints)
        result = {"role": self.role, "model": self.model, "ok": ok, "endpoints": endpoints}
        if ok:
            try:
                result["kind"] = (await self.capabilities()).kind
            except LLMUnavailable:
                pass
        return result


_score = frozen_constructor(YesNoScore)  # a batch parses one per prompt


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Split a batch's token count over its prompts in proportion to their lengths (sums to total)."""
    weight = sum(weights) or 1
    shares = [total * w // weight for w in weights]
    if shares:
        shares[-1] += total - sum(shares)
    return shares


def _first_position(logprobs: dict | None, text: str) -> dict[str, float]:
    """Alternatives at the first generated position, from the OpenAI legacy completions format
    (``top_logprobs: [{token: logprob}]``, what vLLM sends) or the chat format
    (``content: [{token, logprob, top_logprobs: [...]}]``, what llama.cpp sends)."""
    if not logprobs:
        return {}
    if logprobs.get("content"):
        first = logprobs["content"][0]
        top = {alt["token"]: float(alt["logprob"]) for alt in first.get("top_logprobs") or []}
        top.setdefault(first["token"], float(first["logprob"]))
        return top
    top = dict((logprobs.get("top_logprobs") or [None])[0] or {})
    tokens, values = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []
    if tokens and values and values[0] is not None:
        top.setdefault(tokens[0], values[0])
    return top
