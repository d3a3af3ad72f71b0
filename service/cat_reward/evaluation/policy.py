"""The policy under evaluation: G rollouts per prompt from any OpenAI-compatible chat endpoint.

One request asks for all G (``n=G``). A server that returns fewer choices is topped up with
single-choice requests; one that ignores ``n`` (a single choice back) or rejects ``n > 1``
outright (HTTP 400/422) while answering single requests is asked one rollout per request from
then on. With a seed, the k-th extra request
uses ``seed + k``: the same seed would give the same sample G times.

Connection errors, timeouts, 429 and 5xx are retried with backoff; after that, and for any
other failure, ``PolicyError`` says what the server said. Nothing is silently dropped.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import httpx

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
REJECTED_STATUS = {400, 422}


class PolicyError(Exception):
    """The policy endpoint could not give the rollouts asked for."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None = None


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason_phrase)[:300]
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:300]
    return str(body)[:300]


class PolicyClient:
    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        temperature: float = 0.7,
        top_p: float | None = None,
        max_tokens: int = 1024,
        seed: int | None = None,
        timeout_s: float = 600.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.seed = seed
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=10.0), headers=headers, transport=transport
        )
        self.multi_choice: bool | None = None  # does the server honour n > 1? (None: not known yet)
        self.requests = 0  # chat completion requests that returned choices
        self.topped_up = 0  # rollouts that needed a request of their own

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> PolicyClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def _send(self, method: str, path: str, json: dict | None = None) -> dict:
        url = f"{self.base_url}{path}"
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = await self.http.request(method, url, json=json)
            except httpx.TransportError as exc:
                if last:
                    raise PolicyError(f"policy {url}: {type(exc).__name__}: {exc or 'no response'}") from None
            else:
                if response.status_code < 400:
                    try:
                        body = response.json()
                    except ValueError:
                        raise PolicyError(f"policy {url}: the answer is not JSON: {response.text[:200]!r}") from None
                    if not isinstance(body, dict):
                        raise PolicyError(f"policy {url}: the answer is not a JSON object")
                    return body
                if response.status_code not in RETRYABLE_STATUS or last:
                    raise PolicyError(
                        f"policy {url}: HTTP {response.status_code}: {_server_message(response)}",
                        status=response.status_code,
                    )
            await asyncio.sleep(self.backoff_s * (2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def resolve_model(self) -> str:
        """The model to ask: the one configured, else the first the server lists."""
        if self.model:
            return self.model
        body = await self._send("GET", "/models")
        data = body.get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0], dict) or not data[0].get("id"):
            raise PolicyError(f"policy {self.base_url}/models lists no model; pass --policy-model")
        self.model = str(data[0]["id"])
        return self.model

    async def _complete(self, messages: list[dict[str, str]], n: int, seed: int | None) -> list[Completion]:
        body: dict = {
            "model": await self.resolve_model(),
            "messages": messages,
            "n": n,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if seed is not None:
            body["seed"] = seed
        answer = await self._send("POST", "/chat/completions", body)
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices:
            raise PolicyError(f"policy {self.base_url}/chat/completions returned no choices")
        ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
        completions = []
        for i, choice in enumerate(ordered):
            message = choice.get("message") if isinstance(choice, dict) else None
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, str):
                raise PolicyError(f"policy {self.base_url}/chat/completions: choice {i} has no message content")
            completions.append(Completion(text=content, finish_reason=choice.get("finish_reason")))
        self.requests += 1
        return completions

    async def sample(self, messages: list[dict[str, str]], n: int) -> list[Completion]:
        """``n`` rollouts of one prompt, in order."""
        if n < 1:
            raise ValueError("n must be at least 1")
        got: list[Completion] = []
        if n > 1 and self.multi_choice is not False:
            try:
                got = (await self._complete(messages, n, self.seed))[:n]
            except PolicyError as exc:
                if exc.status not in REJECTED_STATUS:
                    raise
                first = await self._complete(messages, 1, self.seed)  # raises if singles fail too
                self.multi_choice = False  # singles work: the server does not take n > 1
                got = first[:1]
                self.topped_up += 1
            else:
                if self.multi_choice is None and len(got) == n:
                    self.multi_choice = True
                elif len(got) == 1:
                    self.multi_choice = False  # n is ignored: ask one rollout per request from now on
        missing = range(len(got), n)
        if missing:
            extra = await asyncio.gather(
                *(self._complete(messages, 1, None if self.seed is None else self.seed + k) for k in missing)
            )
            got.extend(e[0] for e in extra)
            self.topped_up += len(missing) if n > 1 else 0
        return got
