"""The composition root: builds the long-lived objects of one service process from settings."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import httpx

from .backends.aiohttp_pool import AiohttpHTTP
from .backends.http_pool import PooledHTTP
from .backends.math_verify_pool import MathVerifyPool
from .backends.instrumented import InstrumentedLLM
from .backends.openai_compat import OpenAICompatClient
from .backends.token_counting import TokenCounting
from .cache import MemoryCache, RedisCache, ResilientCache, key_namespace
from .engine.pipeline import CacheTTLs, CaTPipeline
from .engine.ports import AnswerChecker, Roles
from .engine.prompts import load_prompt_set
from .metrics import LLM_CALLS, LLM_LATENCY, LLM_TOKENS
from .assembly import MemoryAssemblyStore, RedisAssemblyStore
from .auth import KeyStore, RateLimiter, load_keys
from .rewarding import RewardService, SampleService
from .observability import inject_request_id, request_id_headers
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    roles: Roles
    checker: AnswerChecker
    pipeline: CaTPipeline
    rewards: RewardService
    samples: SampleService
    cache: ResilientCache | None = None
    history: object | None = None
    keys: KeyStore | None = None  # None: open mode
    rate_limiter: RateLimiter | None = None
    _closers: list = field(default_factory=list)

    async def aclose(self) -> None:
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:  # noqa: BLE001 - close everything we can
                log.exception("error while closing %r", close)
        self._closers.clear()


def observe_scoring_batch(
    role: str, stage: str, outcome: str, latency_s: float, prompt_tokens: int, completion_tokens: int
) -> None:
    """LLM metrics for the judge's batched single-token scoring requests (one call per batch,
    whatever number of verdicts and groups it carried), as InstrumentedLLM counts chat calls."""
    LLM_CALLS.labels(role=role, stage=stage, outcome=outcome).inc()
    LLM_LATENCY.labels(role=role, stage=stage).observe(latency_s)
    if outcome == "ok":
        LLM_TOKENS.labels(role=role, stage=stage, kind="prompt").inc(prompt_tokens)
        LLM_TOKENS.labels(role=role, stage=stage, kind="completion").inc(completion_tokens)


def build_roles(settings: Settings, http: httpx.AsyncClient | PooledHTTP | AiohttpHTTP) -> Roles:
    common = dict(
        http=http,
        max_retries=settings.llm_max_retries,
        max_inflight=settings.llm_max_inflight * settings.llm_servers_per_url,
        endpoint_max_prompts=settings.llm_endpoint_max_inflight * settings.llm_servers_per_url,
        affinity=settings.llm_group_affinity,
        session_header=settings.llm_session_header or None,
        breaker_failures=settings.llm_breaker_failures,
        breaker_cooldown_s=settings.llm_breaker_cooldown_s,
    )
    anchor = OpenAICompatClient(
        role="anchor",
        model=settings.anchor_model,
        base_urls=settings.anchor_base_url,
        api_key=settings.anchor_api_key.get_secret_value() if settings.anchor_api_key else None,
        kind=settings.anchor_backend,
        yes_no_scoring=False,  # only the judge scores verdicts
        **common,
    )
    judge_key = settings.judge_api_key or settings.anchor_api_key
    judge_key_text = judge_key.get_secret_value() if judge_key else None
    scoring = dict(
        yes_no_scoring=settings.verdict_batching,
        score_batch_size=settings.verdict_batch_size,
        score_batch_wait_s=settings.verdict_batch_wait_ms / 1000,
        score_max_inflight=settings.verdict_batch_inflight * settings.llm_servers_per_url,
        observe_batch=observe_scoring_batch,
    )
    judge = OpenAICompatClient(
        role="judge",
        model=settings.judge_model_name,
        base_urls=settings.judge_urls,
        api_key=judge_key_text,
        kind=settings.judge_kind,  # type: ignore[arg-type]
        **scoring,
        **common,
    )
    judges = {
        name: OpenAICompatClient(
            role="judge",
            model=spec.get("model") or settings.judge_model_name,
            base_urls=[u.strip() for u in spec["base_url"].split(",") if u.strip()],
            api_key=spec.get("api_key") or judge_key_text,
            kind=spec.get("backend") or settings.judge_kind,  # type: ignore[arg-type]
            **scoring,
            **common,
        )
        for name, spec in settings.extra_judges.items()
    }
    return Roles(anchor=anchor, judge=judge, judges=judges)


def build_cache(settings: Settings) -> ResilientCache | None:
    if not settings.cache_enabled:
        return None
    if settings.redis_url:
        return ResilientCache(RedisCache(settings.redis_url, key_namespace(settings.cache_prefix)), name="redis cache")
    return ResilientCache(MemoryCache(settings.memory_cache_max_entries), name="memory cache")


def open_llm_http(settings: Settings) -> AiohttpHTTP | PooledHTTP:
    """The HTTP client every LLM role shares (``CAT_LLM_HTTP_CLIENT``)."""
    # Both roles may share one server; each endpoint of a role holds up to llm_max_inflight requests.
    per_url = settings.llm_max_inflight * settings.llm_servers_per_url
    max_connections = per_url * (len(settings.anchor_base_url) + len(settings.judge_urls))
    if settings.llm_http_client == "aiohttp":
        return AiohttpHTTP(
            max_connections,
            timeout_s=settings.llm_timeout_s,
            connect_timeout_s=settings.llm_connect_timeout_s,
            extra_headers=request_id_headers,
        )
    return PooledHTTP(
        settings.llm_http_pools,
        max_connections,
        timeout=httpx.Timeout(settings.llm_timeout_s, connect=settings.llm_connect_timeout_s),
        event_hooks={"request": [inject_request_id]},
    )


async def check_endpoints(roles: Roles, timeout_s: float) -> None:
    """Name every endpoint that cannot be reached at start, and route around it until it answers.
    The service starts either way: a judge may come up after it."""
    for llm in {id(r): r for r in (roles.anchor, roles.judge)}.values():
        check = getattr(llm, "check_endpoints", None)
        if check is not None:
            try:
                await asyncio.wait_for(check(timeout_s), timeout=timeout_s + 1)
            except asyncio.TimeoutError:
                log.warning("%s endpoints: the start-up check took over %.0f s; skipped", llm.role, timeout_s + 1)


async def open_services(
    settings: Settings,
    *,
    roles: Roles | None = None,
    checker: AnswerChecker | None = None,
    history=None,
    with_history: bool = True,
) -> Services:
    """Build everything a process needs. ``roles``/``checker``/``history`` may be injected (tests)."""
    keys = load_keys(settings)  # first: a bad key configuration fails the start, before anything opens
    closers = []
    rate_limiter = None
    if settings.rate_limit_per_minute:
        rate_limiter = RateLimiter(settings.rate_limit_per_minute, settings.redis_url, key_namespace(settings.cache_prefix))
        closers.append(rate_limiter.aclose)
    if roles is None:
        http = open_llm_http(settings)
        closers.append(http.aclose)
        roles = build_roles(settings, http)
        await check_endpoints(roles, settings.llm_connect_timeout_s)
    judge = InstrumentedLLM(roles.judge, log_payloads=settings.log_payloads)
    roles = Roles(
        anchor=InstrumentedLLM(roles.anchor, log_payloads=settings.log_payloads),
        judge=judge,
        judges={name: InstrumentedLLM(j, log_payloads=settings.log_payloads) for name, j in roles.judges.items()},
        tokens=roles.tokens or TokenCounting(judge),
    )
    if checker is None:
        pool = MathVerifyPool(workers=settings.verify_workers, timeout_s=settings.verify_timeout_s)
        closers.append(pool.close)
        checker = pool
    cache = build_cache(settings)
    if cache is not None:
        closers.append(cache.aclose)
    if history is None and with_history:
        from .storage import HistoryStore

        history = await HistoryStore.open(
            settings.history_url,
            settings.outbox_file,
            auto_migrate=settings.db_auto_migrate,
            flush_interval_s=settings.history_flush_interval_s,
        )
        closers.append(history.close)
    pipeline = CaTPipeline(
        roles=roles,
        prompts=load_prompt_set(settings.prompt_set),
        checker=checker,
        cache=cache,
        ttls=CacheTTLs(
            reference_s=settings.cache_reference_ttl_s,
            verdict_s=settings.cache_verdict_ttl_s,
            rubric_reuse_s=settings.rubric_reuse_ttl_s,
        ),
    )
    rewards = RewardService(settings, pipeline, history)
    if settings.redis_url:
        assembly_store = RedisAssemblyStore(settings.redis_url, key_namespace(settings.cache_prefix))
    else:
        assembly_store = MemoryAssemblyStore()
    closers.append(assembly_store.aclose)
    return Services(
        settings=settings,
        roles=roles,
        checker=checker,
        pipeline=pipeline,
        rewards=rewards,
        samples=SampleService(settings, rewards, assembly_store),
        cache=cache,
        history=history,
        keys=keys,
        rate_limiter=rate_limiter,
        _closers=closers,
    )
