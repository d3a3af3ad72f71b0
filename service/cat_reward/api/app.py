"""The app factory. Settings come in; nothing is built at import time."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from .. import __version__
from ..engine.ports import AnswerChecker, Roles
from ..settings import Settings
from ..wiring import build_services
from .errors import install_error_handlers
from .routes import health, rewards

DESCRIPTION = """Compute as Teacher (CaT) rewards for RL post-training.

A frozen anchor LLM synthesizes one reference from a group's rollouts; rewards come from
self-proposed rubrics checked by an independent judge (`rubric`), from math equivalence of
final answers (`verifiable`), or from a direct equivalence judgement (`judge`).
A reward that could not be computed is `null` with an error in `details`, never a silent 0.
"""


def create_app(
    settings: Settings | None = None, *, roles: Roles | None = None, checker: AnswerChecker | None = None
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = build_services(settings, roles=roles, checker=checker)
        app.state.services = services
        try:
            yield
        finally:
            await services.aclose()

    app = FastAPI(title="cat-reward", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(rewards.router)
    app.include_router(health.router)
    return app
