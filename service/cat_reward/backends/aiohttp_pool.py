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
The timeouts mean what httpx's do: ``connect_timeout_s`` bounds opening a socket, ``timeout_s``
bounds each wait for the server's bytes; waiting for a free pooled connection has no extra
bound (a busy pool is not a dead backend).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import urllib.request
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import aiohttp
import httpx

JSON_HEADERS = {"Content-Type": "application/json"}
KEEPALIVE_S = 4.0


class HTTPAnswer:
    """What the backends read of an answer: the part of ``httpx.Response`` they use."""

    __slots__ = ("status_code", "headers", "content", "reason_phrase")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes, reason_phrase: str) -> None:
        self.status_code = status_code
        self.headers = headers  # case-insensitive (aiohttp's CIMultiDictProxy)
        self.content = content
        self.reason_phrase = reason_phrase

    def json(self):
        """The body parsed as JSON; ``ValueError`` when it is not JSON (as httpx)."""
        return jsonlib.loads(self.content)

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
        self._timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect_timeout_s, sock_read=timeout_s)
        self._connect_timeout_s = connect_timeout_s
        self._extra_headers = extra_headers
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._env_proxies = urllib.request.getproxies_environment()  # HTTP(S)_PROXY, ALL_PROXY, NO_PROXY
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
                limit=self.max_connections, limit_per_host=0, keepalive_timeout=KEEPALIVE_S
            )
            # Not trust_env: with it aiohttp looks up .netrc and the proxy variables in a worker
            # thread on every request. The proxy variables are read once instead (``_proxy_for``).
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
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
        data = None
        if json is not None:
            # the bytes httpx would send: compact, UTF-8, no NaN
            data = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            send_headers.update(JSON_HEADERS)
        if self._extra_headers is not None:
            send_headers.update(self._extra_headers() or {})
        call_timeout = self._timeout
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
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {url} timed out") from exc
        except asyncio.TimeoutError as exc:  # sock_read, or the whole call's own timeout
            raise httpx.ReadTimeout(f"{method} {url} timed out waiting for the server") from exc
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
