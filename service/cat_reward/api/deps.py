from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..wiring import Services


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


def services_of(request: Request) -> Services:
    """The services, for the hot routes: they take the ``Request`` itself rather than
    ``ServicesDep``, one dependency fewer for FastAPI to resolve on every call (same answer)."""
    return request.app.state.services
