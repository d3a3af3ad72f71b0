"""The app factory. Settings come in; nothing is built at import time."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from .. import __version__
from ..engine.ports import AnswerChecker, Roles
from ..settings import Settings
from ..wiring import open_services
from . import contract
from .errors import install_error_handlers
from .security import require
from .middleware import EdgeMiddleware
from .routes import health, metrics, openrlhf, rewards, rubrics, samples
from .ui import install as install_ui

DESCRIPTION = """Compute as Teacher (CaT) rewards for RL post-training.

A frozen anchor LLM synthesizes one reference from a group's rollouts; rewards come from
self-proposed rubrics checked by an independent judge (`rubric`), from math equivalence of
final answers (`verifiable`), or from a direct equivalence judgement (`judge`).
A reward that could not be computed is `null` with an error in `details`, never a silent 0.
"""


def create_app(
    settings: Settings | None = None,
    *,
    roles: Roles | None = None,
    checker: AnswerChecker | None = None,
    history=None,
    with_history: bool = True,
) -> FastAPI:
    """Build the app. ``roles``, ``checker`` and ``history`` may be injected (tests, embedding);
    ``with_history=False`` runs without an audit history."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = await open_services(
            settings, roles=roles, checker=checker, history=history, with_history=with_history
        )
        app.state.services = services
        try:
            yield
        finally:
            await services.aclose()

    app = FastAPI(title="cat-reward", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    # One layer: the dashboard's security headers, request id, access log and metrics (413s
    # included), body limit.
    app.add_middleware(EdgeMiddleware, max_bytes=settings.max_body_bytes)
    trainers = [Depends(require("rewards"))]
    app.include_router(rewards.router, dependencies=trainers)
    app.include_router(samples.router, dependencies=trainers)
    app.include_router(openrlhf.router, dependencies=trainers)
    app.include_router(rubrics.router, dependencies=[Depends(require("audit"))])
    app.include_router(health.router)  # probes and metrics stay open for the orchestrator and Prometheus
    app.include_router(metrics.router)
    install_ui(app, security_headers=False)  # the audit dashboard at /ui: HTML, guarded by the audit scope, not in openapi.json
    contract.install(app, settings)  # openapi.json: the exact contract for these settings
    return app
