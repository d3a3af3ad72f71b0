"""Ports: the small interfaces the engine needs from the outside world.

The engine only talks to these Protocols. Adapters live in ``cat_reward.backends``
(OpenAI-compatible HTTP, a scripted in-process backend, the math-verify process pool).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

Stage = Literal["synthesis", "rubric", "fused", "verdict", "equivalence"]


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
    # The group's stable key: adapters send it along (e.g. a session header) so that a group's calls
    # can stay on one backend replica and its prefix cache. It changes nothing in the answer.
    session: str | None = None


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
class YesNoScore:
    """One prompt scored with a single generated token.

    ``text`` is the token the backend generated (forced to a yes/no spelling where it can),
    ``top_logprobs`` the alternatives at that first position (token -> logprob)."""

    text: str
    top_logprobs: dict[str, float]
    model: str
    prompt_tokens: int = 0  # this prompt's share of its batch (exact per batch, apportioned within it)
    completion_tokens: int = 0
    batch_id: str = ""  # the backend request that carried it: coalesced batches are shared by groups


class ScoringUnavailable(Exception):
    """The backend cannot score prompts this way (no completions logprobs, a chat template it cannot
    reproduce, ...). The engine then asks through ``chat`` instead."""


@runtime_checkable
class YesNoScorer(Protocol):
    """Optional capability of an ``LLMClient``: many yes/no verdicts in one batched request, each
    one generated token with its logprobs, instead of one chat completion per verdict.

    An adapter that has the methods may still lack the capability at run time (a backend without
    completions logprobs): ``yes_no_scoring`` says so, configured or detected, never assumed."""

    async def yes_no_scoring(self) -> bool:
        """Whether ``render_prompts``/``score_yes_no`` can be used with this backend."""
        ...

    async def render_prompts(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        """Each conversation as the exact prompt text the backend's chat endpoint would build
        (its chat template, with the generation prompt). Raises ``ScoringUnavailable``."""
        ...

    async def score_yes_no(
        self,
        prompts: list[str],
        *,
        stage: Stage,
        temperature: float = 0.0,
        seed: int | None = None,
        choices: tuple[str, ...] = ("yes", "no"),
        session: str | None = None,
    ) -> list[YesNoScore]:
        """One token per fully rendered prompt, one of ``choices`` where the backend can force
        it, with the logprobs of the first position; results in order. Raises ``LLMUnavailable``,
        ``LLMRequestRejected``, ``LLMBadResponse`` or ``ScoringUnavailable``."""
        ...


@dataclass(frozen=True)
class EquivalenceResult:
    equivalent: bool | None
    error: str | None = None  # e.g. "timeout", "unparseable_reference"


@runtime_checkable
class AnswerChecker(Protocol):
    """Decides whether two extracted final answers are mathematically equivalent."""

    async def check(self, reference: str, candidate: str) -> EquivalenceResult: ...


class TokenizerUnavailable(Exception):
    """A tokenizer cannot be loaded or used (its name is in the message)."""


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the tokens of texts: with a named tokenizer (a Hugging Face name or path), or with
    the judge's own (``tokenizer`` None, e.g. vLLM's ``/tokenize``)."""

    async def count_tokens(self, texts: list[str], tokenizer: str | None) -> tuple[list[int], str]:
        """The count of each text, and a description of what counted them. Raises
        ``TokenizerUnavailable``, or an ``LLMError`` when the judge cannot be reached."""
        ...


@dataclass
class Roles:
    """The LLM clients a pipeline uses: the frozen anchor and the independent judge, further
    named judges for verdict ensembles, and a token counter for length control."""

    anchor: LLMClient
    judge: LLMClient
    judges: dict[str, LLMClient] = field(default_factory=dict)  # ensemble members by name ("judge" is the main one)
    tokens: TokenCounter | None = None

    def named_judge(self, name: str) -> LLMClient | None:
        return self.judge if name == "judge" else self.judges.get(name)


@runtime_checkable
class Cache(Protocol):
    """A key-value cache of JSON objects. Adapters namespace and version the keys, and turn
    their own failures into misses: the engine never sees a cache error."""

    async def get_many(self, keys: list[str]) -> list[dict | None]: ...

    async def set_many(self, items: dict[str, dict], ttl_s: float) -> None: ...
