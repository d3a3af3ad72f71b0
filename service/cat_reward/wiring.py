"""The composition root: builds the long-lived objects of one service process from settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from .backends.math_verify_pool import MathVerifyPool
from .backends.openai_compat import OpenAICompatClient
from .engine.pipeline import CaTPipeline
from .engine.ports import AnswerChecker, Roles
from .engine.prompts import load_prompt_set
from .settings import Settings


@dataclass
class Services:
    settings: Settings
    roles: Roles
    checker: AnswerChecker
    pipeline: CaTPipeline
    http: httpx.AsyncClient | None = None
    _closers: list = field(default_factory=list)

    async def aclose(self) -> None:
        for close in reversed(self._closers):
            await close()
        self._closers.clear()


def build_roles(settings: Settings, http: httpx.AsyncClient) -> Roles:
    common = dict(http=http, max_retries=settings.llm_max_retries, max_inflight=settings.llm_max_inflight)
    anchor = OpenAICompatClient(
        role="anchor",
        model=settings.anchor_model,
        base_urls=settings.anchor_base_url,
        api_key=settings.anchor_api_key.get_secret_value() if settings.anchor_api_key else None,
        kind=settings.anchor_backend,
        **common,
    )
    judge_key = settings.judge_api_key or settings.anchor_api_key
    judge = OpenAICompatClient(
        role="judge",
        model=settings.judge_model_name,
        base_urls=settings.judge_urls,
        api_key=judge_key.get_secret_value() if judge_key else None,
        kind=settings.judge_kind,  # type: ignore[arg-type]
        **common,
    )
    return Roles(anchor=anchor, judge=judge)


def build_services(
    settings: Settings, *, roles: Roles | None = None, checker: AnswerChecker | None = None
) -> Services:
    closers = []
    http = None
    if roles is None:
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.llm_timeout_s, connect=settings.llm_connect_timeout_s),
            limits=httpx.Limits(max_connections=2 * settings.llm_max_inflight, max_keepalive_connections=64),
        )
        closers.append(http.aclose)
        roles = build_roles(settings, http)
    if checker is None:
        pool = MathVerifyPool(workers=settings.verify_workers, timeout_s=settings.verify_timeout_s)
        closers.append(pool.close)
        checker = pool
    pipeline = CaTPipeline(roles=roles, prompts=load_prompt_set(settings.prompt_set), checker=checker)
    return Services(settings=settings, roles=roles, checker=checker, pipeline=pipeline, http=http, _closers=closers)
