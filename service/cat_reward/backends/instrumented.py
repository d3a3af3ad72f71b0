"""An LLM client wrapper that counts every call by role and stage (calls, tokens, latency,
errors) in Prometheus, whatever the adapter underneath."""

from __future__ import annotations

import logging
import time

from ..engine.errors import LLMError
from ..engine.ports import ChatRequest, ChatResult
from ..metrics import LLM_CALLS, LLM_LATENCY, LLM_TOKENS


log = logging.getLogger(__name__)


class InstrumentedLLM:
    def __init__(self, inner, *, log_payloads: bool = False) -> None:
        self.inner = inner
        self.role = inner.role
        self.model = inner.model
        self._log_payloads = log_payloads
        # Labelled metric children by stage: a lookup of them costs more than the call's counting
        # (the metrics are never cleared, so a child stays the one the registry exports).
        self._latency: dict = {}
        self._ok: dict = {}

    def __getattr__(self, name):  # probe(), capabilities(), ... of the adapter
        return getattr(self.inner, name)

    async def chat(self, request: ChatRequest) -> ChatResult:
        if self._log_payloads:
            log.debug("%s %s request", self.role, request.stage, extra={"messages": request.messages})
        started = time.perf_counter()
        stage = request.stage
        try:
            result = await self.inner.chat(request)
        except LLMError:
            LLM_CALLS.labels(role=self.role, stage=stage, outcome="error").inc()
            raise
        finally:
            latency = self._latency.get(stage)
            if latency is None:
                latency = self._latency[stage] = LLM_LATENCY.labels(role=self.role, stage=stage)
            latency.observe(time.perf_counter() - started)
        ok = self._ok.get(stage)
        if ok is None:  # the same series as before, made at the first successful call of a stage
            ok = self._ok[stage] = (
                LLM_CALLS.labels(role=self.role, stage=stage, outcome="ok"),
                LLM_TOKENS.labels(role=self.role, stage=stage, kind="prompt"),
                LLM_TOKENS.labels(role=self.role, stage=stage, kind="completion"),
            )
        ok[0].inc()
        ok[1].inc(result.prompt_tokens)
        ok[2].inc(result.completion_tokens)
        return result
