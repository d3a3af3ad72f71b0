"""A scripted in-process LLM for unit tests, fault injection and offline demos.

Each call goes to a ``script`` function that sees the ``ChatRequest`` and returns the reply
text, a full ``ChatResult``, or raises (e.g. ``LLMUnavailable``) to inject a fault.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from ..engine.ports import ChatRequest, ChatResult

Script = Callable[[ChatRequest], "str | ChatResult"]


def yes_no_logprobs(p_yes: float) -> list[dict[str, float]]:
    """Logprobs for a first position that says yes with probability ``p_yes``."""
    p_yes = min(max(p_yes, 1e-9), 1 - 1e-9)
    return [{"yes": math.log(p_yes), "no": math.log(1 - p_yes)}]


class ScriptedLLM:
    def __init__(self, script: Script, *, role: str = "anchor", model: str = "scripted", latency_s: float = 0.0):
        self.role = role
        self.model = model
        self.script = script
        self.latency_s = latency_s
        self.calls: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.calls.append(request)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        reply = self.script(request)
        if isinstance(reply, ChatResult):
            return reply
        prompt_chars = sum(len(m["content"]) for m in request.messages)
        return ChatResult(
            text=reply,
            model=self.model,
            finish_reason="stop",
            prompt_tokens=prompt_chars // 4,
            completion_tokens=max(1, len(reply) // 4),
        )
