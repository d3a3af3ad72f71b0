"""Route guards: an API key with the right scope, then the key's rate limit.

The key is read from ``Authorization: Bearer <key>``, or from an ``api_key`` query parameter for
clients that cannot set headers (OpenRLHF's remote reward client sends a bare URL)."""

from __future__ import annotations

import math

from fastapi import Request
from fastapi.security import HTTPBearer

from .errors import HTTPProblem

DESCRIPTION = "An API key; scopes: rewards, audit, admin."


class Guard(HTTPBearer):
    """The bearer scheme and the guard in one dependency: openapi.json names the same scheme
    (``HTTPBearer``, same description) as a plain ``HTTPBearer`` would, and a request resolves one
    dependency instead of the guard plus the scheme under it (FastAPI's per-dependency work is a
    good part of a small request's CPU)."""

    def __init__(self, scope: str) -> None:
        super().__init__(auto_error=False, description=DESCRIPTION, scheme_name="HTTPBearer")
        self.scope = scope

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        credentials = await HTTPBearer.__call__(self, request)
        scope = self.scope
        services = request.app.state.services
        who = "anonymous"
        if services.keys is not None:
            token = credentials.credentials if credentials else request.query_params.get("api_key")
            if not token:
                raise HTTPProblem(
                    401, "unauthenticated", "missing API key: send 'Authorization: Bearer <key>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            key = services.keys.authenticate(token)
            if key is None:
                raise HTTPProblem(401, "unauthenticated", "unknown API key", headers={"WWW-Authenticate": "Bearer"})
            if not key.allows(scope):
                raise HTTPProblem(
                    403, "forbidden", f"this key lacks the '{scope}' scope (it has: {'+'.join(sorted(key.scopes))})"
                )
            who = key.name
        if services.rate_limiter is not None:
            wait = await services.rate_limiter.hit(who)
            if wait is not None:
                raise HTTPProblem(
                    429, "rate_limited",
                    f"over {services.rate_limiter.per_minute} requests per minute for this key (CAT_RATE_LIMIT_PER_MINUTE)",
                    retry_after=math.ceil(wait),
                )


def require(scope: str) -> Guard:
    """The guard of a router: ``dependencies=[Depends(require("rewards"))]``."""
    return Guard(scope)
