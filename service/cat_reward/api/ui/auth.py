"""Who may see the dashboard: an API key with the ``audit`` scope, from a bearer header or from
the dashboard's session cookie.

A browser cannot send a bearer header, so ``/ui/login`` takes the key in a form and answers with
a signed, expiring session token in a cookie that is HttpOnly (no script reads it),
``SameSite=Strict`` (no other site's page makes the browser send it), limited to ``/ui`` (the
JSON API never sees it, and its own guard never reads cookies) and ``Secure`` on https (after
the trusted proxy headers; ``CAT_UI_COOKIE_SECURE`` forces it either way).

The token is ``v1.<key id>.<expiry, unix seconds>.<MAC>``: the key id is an HMAC of the key's
SHA-256 digest (so the cookie neither holds nor reveals the key, nor its digest), the MAC an
HMAC-SHA256 of the fields before it, both under ``CAT_UI_SESSION_SECRET``, or, when that is unset,
a secret derived from the configured keys' digests (replicas with the same keys agree; a change
of the keys ends every session). No session store: every page request checks the MAC (in
constant time), the expiry (12 hours after login), and that the key it names is still configured
with the ``audit`` (or ``admin``) scope. Keys are loaded at start-up, so a key removed from the
configuration stops opening the dashboard once the service runs with the new configuration.
Logging out deletes the cookie; a copy of the token taken before stays valid until it expires,
unless the secret (or, with a derived secret, the keys) change.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlsplit

from fastapi import Request

COOKIE = "cat_ui_session"
LEGACY_COOKIE = "cat_ui_key"  # before sessions: the key itself; cleared wherever it is seen
COOKIE_PATH = "/ui"
SESSION_TTL_S = 12 * 3600
COOKIE_MAX_AGE_S = SESSION_TTL_S

_VERSION = "v1"
_TOKEN = re.compile(r"^v1\.(?P<kid>[A-Za-z0-9_-]{22})\.(?P<exp>[0-9]{1,12})\.(?P<mac>[A-Za-z0-9_-]{43})$")
_DERIVED_CONTEXT = b"cat-reward ui session secret v1, derived from the key digests\n"
_KID_CONTEXT = b"cat-reward ui key id\x00"


@dataclass(frozen=True)
class Viewer:
    name: str | None  # the key's name; None in open mode
    auth: bool  # keys are configured


class UIExit(Exception):
    """Ends a dashboard request early with this response (a redirect, a 401/403/429 page)."""

    def __init__(self, response) -> None:
        super().__init__(getattr(response, "status_code", ""))
        self.response = response


# --- session tokens -----------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _configured_keys(keys) -> list:
    return keys.keys()


def session_secret(secret, keys) -> bytes:
    """The signing secret: ``CAT_UI_SESSION_SECRET`` when set (not blank), else derived from the
    sorted digests of the configured keys."""
    value = secret.get_secret_value() if secret is not None else ""
    if value.strip():
        return value.encode()
    digests = sorted({key.digest for key in _configured_keys(keys)})
    return hmac.new(_DERIVED_CONTEXT, "\n".join(digests).encode(), hashlib.sha256).digest()


class Sessions:
    """Issues and checks the dashboard's session tokens for one key configuration."""

    def __init__(self, keys, secret=None, *, clock=time.time) -> None:
        self._secret = session_secret(secret, keys)
        self._clock = clock
        self._by_kid = {self._kid(key.digest): key for key in _configured_keys(keys)}

    def _kid(self, digest: str) -> str:
        return _b64(hmac.new(self._secret, _KID_CONTEXT + digest.encode(), hashlib.sha256).digest()[:16])

    def _mac(self, signed: str) -> str:
        return _b64(hmac.new(self._secret, signed.encode(), hashlib.sha256).digest())

    def issue(self, key) -> str:
        signed = f"{_VERSION}.{self._kid(key.digest)}.{int(self._clock()) + SESSION_TTL_S}"
        return f"{signed}.{self._mac(signed)}"

    def verify(self, token: str | None):
        """The key a token names, or None when the token is malformed, forged, expired, or names
        a key that is no longer configured with the ``audit`` (or ``admin``) scope."""
        match = _TOKEN.match(token or "")
        if match is None:
            return None
        signed = token.rpartition(".")[0]
        if not hmac.compare_digest(self._mac(signed), match["mac"]):
            return None
        if int(match["exp"]) <= self._clock():
            return None
        key = self._by_kid.get(match["kid"])
        if key is None or not key.allows("audit"):
            return None
        return key


def sessions(request: Request) -> Sessions:
    """This app's Sessions, built once per set of services (the keys are loaded at start-up)."""
    services = request.app.state.services
    cached = getattr(request.app.state, "ui_sessions", None)
    if cached is None or cached[0] is not services:
        cached = (services, Sessions(services.keys, services.settings.ui_session_secret))
        request.app.state.ui_sessions = cached
    return cached[1]


# --- the cookie ---------------------------------------------------------------------------


def cookie_secure(request: Request) -> bool:
    forced = request.app.state.services.settings.ui_cookie_secure
    return forced if forced is not None else request.url.scheme == "https"


def set_session_cookie(response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=cookie_secure(request),
    )
    if LEGACY_COOKIE in request.cookies:
        _delete(response, request, LEGACY_COOKIE)


def _delete(response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=cookie_secure(request))


def clear_session_cookie(response, request: Request) -> None:
    _delete(response, request, COOKIE)
    if LEGACY_COOKIE in request.cookies:
        _delete(response, request, LEGACY_COOKIE)


# --- where to go --------------------------------------------------------------------------


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path of this site only (never ``//host`` or
    another scheme, which would make the login form an open redirect)."""
    if not value or not value.startswith("/ui") or value.startswith("//") or "\\" in value:
        return "/ui"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 0x20 for c in value):
        return "/ui"
    return value


def login_url(request: Request, *, expired: bool = False) -> str:
    """The login form, coming back here afterwards; ``expired`` makes it say the session ended."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    params = ["expired=1"] if expired else []
    if here not in ("/ui", "/ui/"):
        params.append(f"next={quote(safe_next(here), safe='')}")
    return "/ui/login" + (f"?{'&'.join(params)}" if params else "")


# --- proxies and cross-site posts ---------------------------------------------------------


class TrustedProxies:
    """``CAT_FORWARDED_ALLOW_IPS`` as uvicorn reads it: ``*``, or comma-separated IP addresses,
    networks and other literals (a unix socket's name)."""

    def __init__(self, value: str) -> None:
        items = [item.strip() for item in value.split(",") if item.strip()]
        self.always = "*" in items
        self.addresses, self.networks, self.literals = set(), [], set()
        for item in items:
            try:
                if "/" in item:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(item))
            except ValueError:
                self.literals.add(item)

    def __contains__(self, host: str | None) -> bool:
        if self.always:
            return True
        if not host:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        return ip in self.addresses or any(ip in network for network in self.networks)

    def client_of(self, forwarded_for: str) -> str:
        """The client uvicorn takes from X-Forwarded-For: the first untrusted hop from the right."""
        hops = [_hop_host(hop.strip()) for hop in forwarded_for.split(",")]
        if not self.always:
            for hop in reversed(hops):
                if hop not in self:
                    return hop
        return hops[0]


def _hop_host(hop: str) -> str:
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else hop
    return hop.rsplit(":", 1)[0] if hop.count(":") == 1 else hop


@lru_cache(maxsize=8)
def _trusted_proxies(value: str) -> TrustedProxies:
    return TrustedProxies(value)


def forwarded_trusted(request: Request) -> bool:
    """Whether this request came through a proxy of ``CAT_FORWARDED_ALLOW_IPS``. Under uvicorn
    the peer is no longer in the request once it applied X-Forwarded-For: then the client it
    chose from that header is what it would have chosen for a trusted peer. (A client that
    fakes this for itself gains nothing: it can set any header it likes anyway; what matters is
    that another site's page cannot make a browser send X-Forwarded-Host.)"""
    proxies = _trusted_proxies(request.app.state.services.settings.forwarded_allow_ips)
    client = request.client.host if request.client else None
    forwarded_for = request.headers.get("x-forwarded-for")
    if proxies.always or client in proxies:
        return True
    return bool(forwarded_for) and client == proxies.client_of(forwarded_for)


def public_host(request: Request) -> str:
    """The host the browser asked for: X-Forwarded-Host (its first entry) from a trusted proxy,
    else the Host header."""
    forwarded = request.headers.get("x-forwarded-host")
    if forwarded and forwarded_trusted(request):
        return forwarded.split(",")[0].strip().lower()
    return (request.headers.get("host") or "").strip().lower()


def cross_site(request: Request) -> bool:
    """A form posted from another site's page: refused, so no other site can log a visitor in
    (with the other site's key) or out. Browsers that send Sec-Fetch-Site are believed:
    ``same-origin`` (and ``none``, a URL typed or a bookmark) pass, ``same-site`` and
    ``cross-site`` do not. Without it, Origin (which browsers send on every POST of a form) must
    name the host the browser asked for (behind a proxy that rewrites Host: X-Forwarded-Host
    from a trusted proxy); "null" (a no-referrer policy, a sandboxed frame) is refused, which is
    why the dashboard's own pages use same-origin. A request with neither header (curl) is not a
    browser's."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.strip().lower() not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    if origin.strip().lower() == "null":
        return True
    return urlsplit(origin.strip()).netloc.lower() != public_host(request)


async def rate_limit(request: Request, who: str):
    """The key's rate limit, shared with its API requests: returns the seconds to wait, or None."""
    limiter = request.app.state.services.rate_limiter
    if limiter is None:
        return None
    wait = await limiter.hit(who)
    return None if wait is None else max(1, math.ceil(wait))
