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

    def __getattr__(self, name):  # probe(), capabilities(), ... of the adapter
        return getattr(self.inner, name)

    async def chat(self, request: ChatRequest) -> ChatResult:
        if self._log_payloads:
            log.debug("%s %s request", self.role, request.stage, extra={"messages": request.messages})
        started = time.perf_counter()
        try:
            result = await self.inner.chat(request)
        except LLMError:
            LLM_CALLS.labels(role=self.role, stage=request.stage, outcome="error").inc()
            raise
        finally:
            LLM_LATENCY.labels(role=self.role, stage=request.stage).observe(time.perf_counter() - started)
        LLM_CALLS.labels(role=self.role, stage=request.stage, outcome="ok").inc()
        LLM_TOKENS.labels(role=self.role, stage=request.stage, kind="prompt").inc(result.prompt_tokens)
        LLM_TOKENS.labels(role=self.role, stage=request.stage, kind="completion").inc(result.completion_tokens)
        return result
