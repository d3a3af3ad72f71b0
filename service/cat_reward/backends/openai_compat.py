"""An OpenAI-compatible chat client (vLLM's server, OpenAI, llama.cpp, ...) for one role.

One pooled ``httpx.AsyncClient`` is shared by every role. A role may list several endpoints
(replicas of one model); requests go round-robin and a failed attempt moves to the next one.
Transport errors, timeouts, 429 and 5xx are retried with jittered exponential backoff
(honouring Retry-After); after the last try they become ``LLMUnavailable``. A 400/413/422
becomes ``LLMRequestRejected`` with the backend's own message (typically: the prompt does not
fit the context).

What a backend can do (force JSON with a schema, force one of a few choices, return logprobs)
is configured per role, or detected once (``kind="auto"``: vLLM answers ``GET /version``);
it is never assumed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from dataclasses import dataclass
from typing import Literal

import httpx

from ..engine.errors import LLMBadResponse, LLMRequestRejected, LLMUnavailable
from ..engine.ports import ChatRequest, ChatResult

log = logging.getLogger(__name__)

BackendKind = Literal["auto", "vllm", "openai", "generic"]
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
REJECTED_STATUS = {400, 413, 422}


@dataclass(frozen=True)
class Capabilities:
    kind: str
    json_schema: bool  # response_format {"type": "json_schema"} is honoured
    choice: bool  # vLLM's structured_outputs {"choice": [...]} is honoured
    logprobs: bool  # chat logprobs/top_logprobs are returned


CAPABILITIES: dict[str, Capabilities] = {
    "vllm": Capabilities("vllm", json_schema=True, choice=True, logprobs=True),
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
        http: httpx.AsyncClient,
        api_key: str | None = None,
        kind: BackendKind = "auto",
        max_retries: int = 2,
        max_inflight: int = 64,
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 8.0,
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
        self._rr = itertools.cycle(range(len(self.base_urls)))
        self._max_retries = max_retries
        self._inflight = asyncio.Semaphore(max_inflight)
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s

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
            root = base[: -len("/v1")] if base.endswith("/v1") else base
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
        data = await self._post("/chat/completions", body)
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

    async def _post(self, path: str, body: dict) -> dict:
        last_problem = "no attempt made"
        retry_after: float | None = None
        async with self._inflight:
            for attempt in range(self._max_retries + 1):
                base = self.base_urls[next(self._rr)]
                response: httpx.Response | None = None
                try:
                    response = await self._http.post(base + path, json=body, headers=self._headers)
                except httpx.TimeoutException as exc:
                    last_problem = f"timed out ({type(exc).__name__}) at {base}"
                except httpx.TransportError as exc:
                    last_problem = f"unreachable at {base}: {exc!r}"
                else:
                    status = response.status_code
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
