"""Ports: the small interfaces the engine needs from the outside world.

The engine only talks to these Protocols. Adapters live in ``cat_reward.backends``
(OpenAI-compatible HTTP, a scripted in-process backend, the math-verify process pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Stage = Literal["synthesis", "rubric", "verdict", "equivalence"]


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion the engine wants. Forcing fields are wishes: the backend
    applies them only when it has the capability, and says so in ``ChatResult``."""

    messages: list[dict[str, str]]
    stage: Stage
    max_tokens: int
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    json_schema: dict | None = None  # force JSON matching this schema
    choices: tuple[str, ...] | None = None  # force the reply to be one of these
    top_logprobs: int | None = None  # return this many alternatives per position


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    # One dict per generated position (token -> logprob), when logprobs were asked for and given.
    top_logprobs: list[dict[str, float]] | None = None
    forced: bool = False  # whether json_schema/choices forcing was applied


@runtime_checkable
class LLMClient(Protocol):
    """A chat model in one role (anchor or judge)."""

    role: str
    model: str

    async def chat(self, request: ChatRequest) -> ChatResult:
        """Run one chat completion. Raises ``LLMUnavailable``, ``LLMRequestRejected``
        or ``LLMBadResponse`` (``cat_reward.engine.errors``)."""
        ...


@dataclass(frozen=True)
class EquivalenceResult:
    equivalent: bool | None
    error: str | None = None  # e.g. "timeout", "unparseable_reference"


@runtime_checkable
class AnswerChecker(Protocol):
    """Decides whether two extracted final answers are mathematically equivalent."""

    async def check(self, reference: str, candidate: str) -> EquivalenceResult: ...


@dataclass
class Roles:
    """The LLM clients a pipeline uses: the frozen anchor and the independent judge."""

    anchor: LLMClient
    judge: LLMClient


@runtime_checkable
class Cache(Protocol):
    """A key-value cache of JSON objects. Adapters namespace and version the keys, and turn
    their own failures into misses: the engine never sees a cache error."""

    async def get_many(self, keys: list[str]) -> list[dict | None]: ...

    async def set_many(self, items: dict[str, dict], ttl_s: float) -> None: ...
