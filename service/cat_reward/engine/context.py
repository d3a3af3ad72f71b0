"""What every pipeline stage of one group shares: the LLM roles, the prompt set, the answer
checker, the group's resolved options and its usage meter."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from operator import attrgetter

from .ports import AnswerChecker, ChatRequest, ChatResult, EquivalenceResult, Roles, YesNoScore
from .prompts import PromptSet
from .types import Group, Usage


_batch_id = attrgetter("batch_id")
_prompt_tokens = attrgetter("prompt_tokens")
_completion_tokens = attrgetter("completion_tokens")


@dataclass
class GroupContext:
    group: Group
    roles: Roles
    prompts: PromptSet
    checker: AnswerChecker
    usage: Usage = field(default_factory=Usage)
    _equivalence_memo: dict[tuple[str, str], EquivalenceResult] = field(default_factory=dict)
    _session: str | None = None
    _batches: set = field(default_factory=set)  # judge batches already counted (a batch may carry several asks)
    _injection: list[list[str]] | None = None

    @property
    def injection(self) -> list[list[str]]:
        """Each rollout's injection flags (``injection.injection_flags``), found once per group:
        the anchor's inputs and the reward policy read the same result."""
        if self._injection is None:
            from .injection import injection_flags

            self._injection = [injection_flags(text) for text in self.group.rollouts]
        return self._injection

    @property
    def options(self):
        return self.group.options

    @property
    def session(self) -> str:
        """The group's stable key, passed with every LLM call of the group (the adapters send it as
        a session header): the same prompt and rollouts give the same key, on any replica and on
        a retry, so the group's calls can stay on one backend's prefix cache."""
        if self._session is None:
            self._session = session_key(self.group)
        return self._session

    async def anchor(self, request: ChatRequest) -> ChatResult:
        return await self._call(self.roles.anchor, request)

    async def judge(self, request: ChatRequest, client=None) -> ChatResult:
        """``client``: an ensemble member's judge; default the main one."""
        return await self._call(client or self.roles.judge, request)

    async def _call(self, llm, request: ChatRequest) -> ChatResult:
        if request.session is None:
            request = replace(request, session=self.session)
        started = time.perf_counter()
        try:
            result = await llm.chat(request)
        finally:
            stage = self.usage.stage(request.stage)
            stage.calls += 1
            stage.latency_s += time.perf_counter() - started
        stage.prompt_tokens += result.prompt_tokens
        stage.completion_tokens += result.completion_tokens
        return result

    async def judge_scores(
        self,
        prompts: list[str],
        stage: str,
        *,
        temperature: float,
        seed: int | None,
        choices: tuple[str, ...],
        client=None,
    ) -> list[YesNoScore]:
        """Single-token yes/no scores from the judge. A stage's ``calls`` counts the backend
        requests that carried this group's prompts, each once (batches are shared with other groups; their
        prompt tokens are apportioned by the backend adapter)."""
        started = time.perf_counter()
        usage = self.usage.stage(stage)
        try:
            scores = await (client or self.roles.judge).score_yes_no(
                prompts, stage=stage, temperature=temperature, seed=seed, choices=choices, session=self.session
            )
        except BaseException:
            usage.calls += 1
            raise
        finally:
            usage.latency_s += time.perf_counter() - started
        # A group's scores come in one or a few batches: their ids first, then the (stage, id) pairs.
        batches = {(stage, b) for b in set(map(_batch_id, scores))} - self._batches
        self._batches |= batches
        usage.calls += len(batches)
        usage.prompt_tokens += sum(map(_prompt_tokens, scores))
        usage.completion_tokens += sum(map(_completion_tokens, scores))
        return scores

    async def equivalent(self, reference: str, candidate: str) -> EquivalenceResult:
        """Answer check, memoised within the group (majority vote and scoring ask the same pairs)."""
        key = (reference, candidate)
        if key not in self._equivalence_memo:
            self._equivalence_memo[key] = await self.checker.check(reference, candidate)
        return self._equivalence_memo[key]


def session_key(group: Group) -> str:
    """A short digest of the group's prompt and rollouts (its identity for routing, not a cache key)."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(repr(group.prompt).encode())
    for rollout in group.rollouts:
        digest.update(b"\x00%d\x00" % len(rollout))
        digest.update(rollout.encode())
    return "cat-" + digest.hexdigest()
