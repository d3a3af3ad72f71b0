"""The audit dashboard at ``/ui``: server-rendered HTML pages over the audit history, no script.

``install(app)`` adds it to an app: the stylesheet, the pages, the handler that turns a guard's
early exit into its page, and the security headers of every ``/ui`` response.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from .auth import UIExit
from .rendering import STATIC_DIR, STATIC_PREFIX, SecurityHeadersMiddleware
from .routes import router


async def _exit(request: Request, exc: UIExit):
    return exc.response


def install(app: FastAPI) -> None:
    # The stylesheet first: the router's catch-all 404 page would otherwise shadow it.
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.include_router(router)
    app.add_exception_handler(UIExit, _exit)
    app.add_middleware(SecurityHeadersMiddleware)


__all__ = ["install"]
