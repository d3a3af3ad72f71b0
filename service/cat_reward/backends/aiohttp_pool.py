"""Outgoing HTTP to the LLM backends over aiohttp (the default; ``CAT_LLM_HTTP_CLIENT``).

A reward costs the service about three LLM requests per group (synthesis, rubric and a share of
a verdict batch), so the HTTP client's own CPU is a large part of the service's. Measured on
this project's 2-core machine against the instant stub of ``bench/`` (3 KB chat bodies, one
client process): httpx 0.5 ms of CPU per request at 1 and 8 in flight and 1.1 ms at 64;
aiohttp 0.10-0.15 ms at all three. The difference is httpcore's per-request bookkeeping on
anyio (cancel scopes, locks, pool walks) against aiohttp's C-accelerated HTTP parser and pool.

``AiohttpHTTP`` offers the part of ``httpx.AsyncClient`` the backends call (``get``, ``post``,
``aclose``) and keeps its contract, so ``OpenAICompatClient`` runs unchanged on either client:
the answer exposes ``status_code``, ``headers``, ``json()``, ``text`` and ``reason_phrase``;
a timeout raises ``httpx.TimeoutException`` (``ConnectTimeout`` or ``ReadTimeout``) and any
other failure to exchange a request raises ``httpx.TransportError``, which the backend retries.
The timeouts mean what httpx's do: ``connect_timeout_s`` bounds the DNS lookup and opening a
socket, ``timeout_s`` bounds each wait for the server's bytes. aiohttp has no write timeout, so
a call whose body is over 1 MiB is also bounded by ``connect_timeout_s + 2 * timeout_s`` as a
whole (a server that stops reading a large body would otherwise hold it forever; a smaller body
fits in the socket buffers). Waiting for a free pooled connection counts only against that
backstop (a busy pool is not a dead backend). A call given its own ``timeout`` (the readiness
probes) is bounded by it as a whole, as httpx's pool, connect and read timeouts together would be.

What else matches httpx: the trusted certificates (``httpx.create_ssl_context()``: certifi, or
SSL_CERT_FILE / SSL_CERT_DIR), the proxy variables (read once; a proxy written without a scheme
means http://), header lines up to 64 KiB, redirects not followed, and a caller's Content-Type
kept.
"""

from __future__ import annotations

import asyncio
import io
import json as jsonlib
import socket
import urllib.request
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import aiohttp
import httpx
import orjson

KEEPALIVE_S = 4.0
LARGE_BODY = 1 << 20
MAX_HEADER_LINE = 65536  # h11, under httpx, takes header blocks up to 100 KiB; aiohttp's default is 8190


def _may_hold_null_value(data: bytes) -> bool:
    """Whether ``data`` has ``null`` where orjson writes a null value: first, or after ":", "," or
    "[". Inside a string it would need one of those characters before it too, which a response's
    text rarely has, while the bare word often does. A ``find`` loop, not a regex: a pattern that
    starts with an alternation is tried at every byte (10 ms on a 300 KB verdict batch)."""
    at = data.find(b"null")
    while at != -1:
        if at == 0 or data[at - 1] in b":,[":
            return True
        at = data.find(b"null", at + 4)
    return False


def _encode(value: object) -> bytes:
    """Compact UTF-8 JSON; ``ValueError`` on NaN or infinity, as httpx (orjson writes them as null,
    so a body that may hold a null value is checked again by the standard library, which raises)."""
    data = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)  # TypeError on what JSON cannot hold
    if _may_hold_null_value(data):
        jsonlib.dumps(value, allow_nan=False)
    return data


class _DNSTimeout(Exception):
    pass


class _BoundedResolver(aiohttp.ThreadedResolver):
    """The system resolver with a deadline: aiohttp's own connect timeouts do not cover DNS."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        try:
            return await asyncio.wait_for(super().resolve(host, port, family), self._timeout_s)
        except asyncio.TimeoutError as exc:
            raise _DNSTimeout(f"resolving {host} took over {self._timeout_s:g} s") from exc



class HTTPAnswer:
    """What the backends read of an answer: the part of ``httpx.Response`` they use."""

    __slots__ = ("status_code", "headers", "content", "reason_phrase")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes, reason_phrase: str) -> None:
        self.status_code = status_code
        self.headers = headers  # case-insensitive (aiohttp's CIMultiDictProxy)
        self.content = content
        self.reason_phrase = reason_phrase

    def json(self):
        """The body parsed as JSON; ``ValueError`` when it is not JSON (as httpx; orjson's error is one)."""
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class AiohttpHTTP:
    """One aiohttp session with a pool of ``max_connections`` keep-alive connections."""

    def __init__(
        self,
        max_connections: int,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        extra_headers: Callable[[], Mapping[str, str] | None] | None = None,
    ) -> None:
        self.max_connections = max(1, max_connections)
        per_step = dict(connect=None, sock_connect=connect_timeout_s, sock_read=timeout_s)
        self._timeout = aiohttp.ClientTimeout(total=None, **per_step)
        # A body larger than the socket buffers can block in its write, which no timeout above
        # covers: such a call gets a bound on the whole (an overall timer costs CPU on every read,
        # so small calls, whose bodies always fit, go without).
        self._large_timeout = aiohttp.ClientTimeout(total=connect_timeout_s + 2 * timeout_s, **per_step)
        self._connect_timeout_s = connect_timeout_s
        self._extra_headers = extra_headers
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._env_proxies = urllib.request.getproxies_environment()  # HTTP(S)_PROXY, ALL_PROXY, NO_PROXY
        for scheme, proxy in self._env_proxies.items():
            if scheme != "no" and proxy.lower().startswith("socks"):
                # aiohttp would send plain HTTP to it and every LLM call would fail; httpx refuses too
                raise ValueError(
                    f"{scheme}_proxy={proxy!r}: SOCKS proxies are not supported for the LLM calls "
                    "(use an HTTP proxy, list the LLM hosts in NO_PROXY, or CAT_LLM_HTTP_CLIENT=httpx "
                    "with httpx[socks] installed)"
                )
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _proxy_for(self, url: str) -> str | None:
        """The proxy the environment names for ``url`` (as httpx honours it by default), or None."""
        parts = urlsplit(url)
        origin = (parts.scheme, parts.netloc)
        if origin not in self._proxies:
            proxies = self._env_proxies
            proxy = proxies.get(parts.scheme) or proxies.get("all")
            if proxy and urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
                proxy = None
            if proxy and "://" not in proxy:
                proxy = "http://" + proxy  # host:port, as curl and httpx read it
            self._proxies[origin] = proxy or None
        return self._proxies[origin]

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: an aiohttp session belongs to the running event loop.
        if self._closed:
            raise RuntimeError("AiohttpHTTP is closed")
        if self._session is None:
            # An idle connection is dropped after KEEPALIVE_S, before the server drops it (uvicorn,
            # and so vLLM, closes after 5 s): a POST sent on a connection the server is closing
            # fails, and aiohttp does not resend a POST.
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=0,
                keepalive_timeout=KEEPALIVE_S,
                resolver=_BoundedResolver(self._connect_timeout_s),
                ssl=httpx.create_ssl_context(),  # the certificates httpx trusts
            )
            # Not trust_env: with it aiohttp looks up .netrc and the proxy variables in a worker
            # thread on every request. The proxy variables are read once instead (``_proxy_for``).
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                max_line_size=MAX_HEADER_LINE,
                max_field_size=MAX_HEADER_LINE,
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: object = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HTTPAnswer:
        session = self._open()
        send_headers = dict(headers) if headers else {}
        data: bytes | io.BytesIO | None = None
        call_timeout = self._timeout
        if json is not None:
            # the bytes httpx would send: compact, UTF-8, no NaN. orjson: a verdict batch body is
            # G x (n + 1) prompts each holding its response (~180 KB at G=8, n=8), and the standard
            # library's encoder took 13% of the service's CPU under the load test.
            data = _encode(json)
            if len(data) > LARGE_BODY:
                data = io.BytesIO(data)  # aiohttp writes it in chunks (raw bytes this large: a ResourceWarning)
                call_timeout = self._large_timeout
            if not any(name.lower() == "content-type" for name in send_headers):
                send_headers["Content-Type"] = "application/json"
        if self._extra_headers is not None:
            send_headers.update(self._extra_headers() or {})
        if timeout is not None:
            call_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, self._connect_timeout_s))
        try:
            async with session.request(
                method, url, data=data, headers=send_headers, timeout=call_timeout,
                allow_redirects=False,  # as httpx
                proxy=self._proxy_for(url),
            ) as answer:
                content = await answer.read()
                return HTTPAnswer(answer.status, answer.headers, content, answer.reason or "")
        except (aiohttp.ConnectionTimeoutError, _DNSTimeout) as exc:
            raise httpx.ConnectTimeout(f"connecting to {url} timed out: {exc}") from exc
        except asyncio.TimeoutError as exc:  # sock_read, or the whole call's own timeout
            raise httpx.ReadTimeout(f"{method} {url} timed out") from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(f"cannot connect to {url}: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            # the server closed the connection, sent a malformed answer, or the socket failed
            raise httpx.ReadError(f"{method} {url} failed: {exc!r}") from exc

    async def get(self, url: str, **kwargs) -> HTTPAnswer:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs) -> HTTPAnswer:
        return await self.request("POST", url, **kwargs)

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
