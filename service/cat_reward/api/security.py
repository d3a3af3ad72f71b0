"""Route guards: an API key with the right scope, then the key's rate limit.

The key is read from ``Authorization: Bearer <key>``, or from an ``api_key`` query parameter for
clients that cannot set headers (OpenRLHF's remote reward client sends a bare URL)."""

from __future__ import annotations

import math

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import HTTPProblem

bearer = HTTPBearer(auto_error=False, description="An API key; scopes: rewards, audit, admin.")


def require(scope: str):
    async def guard(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
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

    return guard
