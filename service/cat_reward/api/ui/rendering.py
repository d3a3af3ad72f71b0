"""Jinja2 templates for the dashboard, and the security headers of every ``/ui`` response.

Autoescaping is on for every template: prompts, rollouts, references and criteria are untrusted
text (a rollout is whatever a policy wrote), so everything a template prints is escaped, in
element content and in attributes alike. The pages use no script at all, and the
Content-Security-Policy forbids any: even markup that slipped through could not run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from ... import __version__
from .views import fmt_num, fmt_time

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/ui/static"

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # URLs carry filters (prompt text): never to other sites
]


def _asset_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.glob("*")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _pretty(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=jinja2.StrictUndefined,  # a misspelt variable is an error in the tests, not an empty cell
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(time=fmt_time, num=fmt_num, pathseg=lambda s: quote(str(s), safe=""), pretty=_pretty)
env.globals.update(
    css_url=f"{STATIC_PREFIX}/ui.css?v={_asset_version()}",
    version=__version__,
)


def page(request: Request, template: str, *, status: int = 200, headers: dict | None = None, **context) -> HTMLResponse:
    """A rendered page. ``viewer`` (who is looking; None before login) is always in the context."""
    context.setdefault("viewer", None)
    html = env.get_template(template).render(request_path=request.url.path, **context)
    return HTMLResponse(html, status_code=status, headers=headers)


def error_page(
    request: Request, status: int, title: str, message: str, *, viewer=None, headers: dict | None = None
) -> HTMLResponse:
    return page(request, "error.html", status=status, headers=headers, title=title, message=message, viewer=viewer)


_SECURITY_NAMES = frozenset(name for name, _ in SECURITY_HEADERS)


def with_security_headers(headers: list, static: bool) -> list:
    """A ``/ui`` response's headers: the CSP and friends (replacing any of the same names), and
    ``Cache-Control: no-store`` but for the static stylesheet: audit pages must not stay in
    shared or browser caches after logout."""
    headers = [(k, v) for k, v in headers if k.lower() not in _SECURITY_NAMES]
    headers += SECURITY_HEADERS
    if not static:
        headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
        headers.append((b"cache-control", b"no-store"))
    return headers


class SecurityHeadersMiddleware:
    """Adds ``with_security_headers`` to every response under ``/ui`` (pages, redirects, the
    static stylesheet, error pages), for an app without the service's ``EdgeMiddleware`` (which
    does the same in its own layer)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/ui" or path.startswith("/ui/")):
            return await self.app(scope, receive, send)
        static = path.startswith(STATIC_PREFIX + "/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(message.get("headers", []), static)
            await send(message)

        await self.app(scope, receive, send_with_headers)
