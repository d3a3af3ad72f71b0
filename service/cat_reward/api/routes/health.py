"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ... import __version__
from ..deps import ServicesDep
from ..schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok", version=__version__)


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "The anchor or the judge is not reachable."}},
    summary="The anchor and judge backends serve their models",
)
async def readyz(services: ServicesDep):
    roles = [services.roles.anchor, services.roles.judge, *services.roles.judges.values()]
    probes = []
    for llm in roles:
        probe = getattr(llm, "probe", None)
        probes.append(probe() if probe else _static_probe(llm))
    results = list(await asyncio.gather(*probes))
    # Extra judges (CAT_EXTRA_JUDGES) are listed by name; only those in the default ensemble
    # (CAT_VERDICT_ENSEMBLE) are needed for readiness, the others serve requests that ask for them.
    needed = {m.split("/", 1)[0] for m in services.settings.verdict_ensemble}
    for name, result in zip(services.roles.judges, results[2:]):
        result["name"] = name
        result["required"] = name in needed
    ready = all(r["ok"] for r in results if r.get("required", True))
    body = Readiness(ready=ready, roles=results)
    if ready:
        return body
    return JSONResponse(status_code=503, content=body.model_dump())


async def _static_probe(llm) -> dict:
    return {"role": llm.role, "model": llm.model, "ok": True, "endpoints": []}
