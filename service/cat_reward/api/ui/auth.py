"""Who may see the dashboard: an API key with the ``audit`` scope, from a bearer header or from
the dashboard's cookie.

A browser cannot send a bearer header, so ``/ui/login`` takes the key in a form and keeps it in
a cookie that is HttpOnly (no script reads it), ``SameSite=Strict`` (no other site's page makes
the browser send it), limited to ``/ui`` (the JSON API never sees it, and its own guard never
reads cookies) and ``Secure`` on https. The cookie holds the key itself, base64url-encoded, not a
session: every page request authenticates it against the configured keys again, so a key that is
removed from the configuration stops working in the dashboard at once, and nothing needs a
server-side secret or session store shared by workers and replicas.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import Request

COOKIE = "cat_ui_key"
COOKIE_PATH = "/ui"
COOKIE_MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class Viewer:
    name: str | None  # the key's name; None in open mode
    auth: bool  # keys are configured


class UIExit(Exception):
    """Ends a dashboard request early with this response (a redirect, a 401/403/429 page)."""

    def __init__(self, response) -> None:
        super().__init__(getattr(response, "status_code", ""))
        self.response = response


def encode_cookie(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cookie(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError):
        return None


def set_key_cookie(response, request: Request, key: str) -> None:
    response.set_cookie(
        COOKIE,
        encode_cookie(key),
        max_age=COOKIE_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_key_cookie(response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path of this site only (never ``//host`` or
    another scheme, which would make the login form an open redirect)."""
    if not value or not value.startswith("/ui") or value.startswith("//") or "\\" in value:
        return "/ui"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in value):
        return "/ui"
    return value


def login_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/ui/login" if here in ("/ui", "/ui/") else f"/ui/login?next={quote(safe_next(here), safe='')}"


def cross_site(request: Request) -> bool:
    """A form posted from another site's page: refused, so no other site can log a visitor in
    (with the other site's key). Browsers send Origin on every POST of a form, and
    Sec-Fetch-Site where they support it; a request with neither (curl) is not a browser's.
    Origin is "null" when the posting page's referrer policy is no-referrer (or it is a
    sandboxed frame): refused, which is why the dashboard's own pages use same-origin."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    return urlsplit(origin).netloc.lower() != (request.headers.get("host") or "").lower()


async def rate_limit(request: Request, who: str):
    """The key's rate limit, shared with its API requests: returns the seconds to wait, or None."""
    limiter = request.app.state.services.rate_limiter
    if limiter is None:
        return None
    wait = await limiter.hit(who)
    return None if wait is None else max(1, math.ceil(wait))
