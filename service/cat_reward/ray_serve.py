"""cat-reward on Ray Serve: the same FastAPI app as a Serve ingress, and a handle path with no
HTTP for trainers that run in the same Ray cluster (``cat_reward_trainers.ray_serve``).

    pip install 'cat-reward[ray]'
    serve run cat_reward.ray_serve:app                  # one command, settings from CAT_* env
    serve deploy deploy/ray/serve.yaml                  # a running cluster, config in YAML

Each replica builds the app from its settings (the ``CAT_*`` environment of the replica, e.g. the
config's ``runtime_env.env_vars``, over which the ``settings`` argument of ``build`` wins), runs
its lifespan (history, cache, LLM clients) and serves:

- HTTP through Serve's proxy: every route of the app, with API keys as ``cat-reward serve``;
- ``handle.call.remote(path, body, idempotency_key)``: ``POST /rewards`` or ``/rewards/batch``
  answered in process, as ``(status, JSON)`` (``cat_reward.api.handle``).

Replicas are stateless, as behind any balancer: groups are scored where they land, the audit
history is shared (PostgreSQL) and so is the cache (Redis). Serve balances and autoscales them
on ongoing requests. Serve does not retry a request in flight on a replica that dies; callers
retry it under the same idempotency key (the trainers' adapter does), so the history keeps one
record per request.

This module is a composition root, like the command line: it assembles the app.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from .settings import Settings

DEPLOYMENT_NAME = "CatReward"
APP_NAME = "cat-reward"

# Autoscaling on ongoing requests per replica. One replica scores CAT_MAX_ACTIVE_GROUPS (64)
# groups at once and queues the rest, so 32 ongoing requests keep it busy without piling up.
AUTOSCALING = {
    "min_replicas": 2,
    "max_replicas": 8,
    "target_ongoing_requests": 32,
    "upscale_delay_s": 10,
    "downscale_delay_s": 300,
}


def _refusal(settings: Settings) -> str | None:
    from .auth import AuthConfigError, load_keys, open_mode_unrequested

    if open_mode_unrequested(settings):
        return (
            "no API keys configured: set CAT_API_KEYS (KEY:SCOPE[+SCOPE]) or CAT_API_KEYS_FILE in the replicas' "
            "environment, or CAT_AUTH=open to serve HTTP without authentication."
        )
    try:
        load_keys(settings)
    except AuthConfigError as exc:
        return str(exc)
    return None


@serve.deployment(
    name=DEPLOYMENT_NAME,
    ray_actor_options={"num_cpus": 1},
    autoscaling_config=AUTOSCALING,
    max_ongoing_requests=256,  # admission (CAT_MAX_QUEUED_GROUPS) answers 503 beyond what a replica can queue
    graceful_shutdown_timeout_s=400,  # a group in flight finishes (three LLM stages of CAT_LLM_TIMEOUT_S)
    health_check_period_s=5,
)
@serve.ingress()
class CatReward:
    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        from .api import create_app

        self._cat_settings = Settings(**(settings or {}))
        refusal = _refusal(self._cat_settings)
        if refusal:
            raise RuntimeError(f"cat-reward will not start: {refusal}")
        self._cat_app = create_app(self._cat_settings)

    def __serve_build_asgi_app__(self):
        return self._cat_app

    async def call(self, path: str, body: bytes, idempotency_key: str | None = None) -> tuple[int, bytes]:
        """``POST path`` with ``body`` (JSON bytes), answered as the HTTP route: (status, JSON bytes)."""
        from .api.handle import call

        return await call(self._cat_app.state.services, path, body, idempotency_key)


def build(args: dict[str, Any]) -> serve.Application:
    """Serve's application builder: ``serve run cat_reward.ray_serve:build settings='{...}'`` or
    ``import_path: cat_reward.ray_serve:build`` with ``args: {settings: {...}}`` in a config."""
    settings = args.get("settings")
    if isinstance(settings, str):
        import json

        settings = json.loads(settings)
    return CatReward.bind(settings)


app = CatReward.bind()
