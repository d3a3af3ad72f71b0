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


def install(app: FastAPI, *, security_headers: bool = True) -> None:
    """``security_headers=False``: the app's own middleware adds them (the service's
    ``EdgeMiddleware`` does, in the layer that also sets the request id)."""
    # The stylesheet first: the router's catch-all 404 page would otherwise shadow it.
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.include_router(router)
    app.add_exception_handler(UIExit, _exit)
    if security_headers:
        app.add_middleware(SecurityHeadersMiddleware)


__all__ = ["install"]
