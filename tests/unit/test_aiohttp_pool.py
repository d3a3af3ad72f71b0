"""AiohttpHTTP, the default LLM HTTP client, against real sockets: what it sends, what it returns,
and how each way of failing maps onto the httpx errors the backend retries."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import orjson
import pytest

from cat_reward.backends.aiohttp_pool import AiohttpHTTP
from cat_reward.backends.openai_compat import OpenAICompatClient
from cat_reward.engine import ChatRequest, LLMUnavailable
from cat_reward.observability import request_id, request_id_headers

pytestmark = pytest.mark.anyio


class Close(bytes):
    """An answer after which the server closes the connection."""


class ScriptedServer:
    """An HTTP/1.1 server on 127.0.0.1 whose every request is answered by ``script(request)``:
    bytes to write (then the connection stays open for keep-alive; ``Close`` bytes: it closes),
    or None to hang up at once.
    It records each request and how many connections were open at most."""

    def __init__(self, script, ssl=None):
        self.script = script
        self.ssl = ssl
        self.requests: list[dict] = []
        self.open_connections = 0
        self.most_connections = 0
        self.connections_seen = 0

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        scheme = "https" if self.ssl else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for writer in list(getattr(self, "_writers", [])):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers = getattr(self, "_writers", set())
        self._writers.add(writer)
        self.open_connections += 1
        self.connections_seen += 1
        self.most_connections = max(self.most_connections, self.open_connections)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                request = {"method": method, "path": target, "headers": headers, "body": body}
                self.requests.append(request)
                answer = self.script(request)
                if asyncio.iscoroutine(answer):
                    answer = await answer
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if isinstance(answer, Close):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.close()


def http_answer(status: int, body: bytes, *headers: str, reason: str = "OK") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_answer(payload, status: int = 200, *headers: str) -> bytes:
    return http_answer(status, json.dumps(payload).encode(), "Content-Type: application/json", *headers)


async def until(condition, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def client(**kwargs) -> AiohttpHTTP:
    kwargs.setdefault("timeout_s", 5.0)
    kwargs.setdefault("connect_timeout_s", 2.0)
    return AiohttpHTTP(8, **kwargs)


async def test_posts_compact_utf8_json_and_reads_the_answer():
    async with ScriptedServer(lambda r: json_answer({"ok": True}, 201, "Retry-After: 7", "X-Thing: a")) as server:
        http = client(extra_headers=request_id_headers)
        try:
            token = request_id.set("rid-123")
            try:
                answer = await http.post(f"{server.url}/v1/chat", json={"text": "héllo", "n": [1, 2]}, headers={"Authorization": "Bearer k"})
            finally:
                request_id.reset(token)
            got = await http.get(f"{server.url}/version")
        finally:
            await http.aclose()
    sent = server.requests[0]
    assert sent["method"] == "POST" and sent["path"] == "/v1/chat"
    assert sent["body"] == '{"text":"héllo","n":[1,2]}'.encode()  # what httpx sends for json=
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["headers"]["authorization"] == "Bearer k"
    assert sent["headers"]["x-request-id"] == "rid-123"
    assert "x-request-id" not in server.requests[1]["headers"]  # no request id outside a request
    assert answer.status_code == 201 and answer.json() == {"ok": True}
    assert answer.headers.get("retry-after") == "7" and answer.headers.get("RETRY-AFTER") == "7"
    assert answer.reason_phrase == "OK" and answer.text == '{"ok": true}'
    assert server.connections_seen == 1  # the second request reused the kept-alive connection


async def test_a_body_that_is_not_json_raises_value_error():
    async with ScriptedServer(lambda r: http_answer(502, b"<html>bad gateway</html>", reason="Bad Gateway")) as server:
        http = client()
        try:
            answer = await http.post(f"{server.url}/v1/chat", json={})
        finally:
            await http.aclose()
    assert answer.status_code == 502 and answer.reason_phrase == "Bad Gateway"
    assert answer.text == "<html>bad gateway</html>"
    with pytest.raises(ValueError):
        answer.json()


async def test_refused_connection_is_an_httpx_connect_error():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = client()
    try:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{port}/v1/chat", json={})
    finally:
        await http.aclose()


async def test_a_server_that_never_answers_is_a_read_timeout():
    async def hang(request):
        await asyncio.sleep(30)

    async with ScriptedServer(hang) as server:
        http = client(timeout_s=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with pytest.raises(httpx.ReadTimeout) as info:
                await http.post(f"{server.url}/v1/chat", json={})
        finally:
            await http.aclose()
    assert isinstance(info.value, httpx.TimeoutException)
    assert 0.25 <= loop.time() - started < 3


async def test_a_per_call_timeout_bounds_the_whole_call():
    async def slow(request):
        await asyncio.sleep(30)

    async with ScriptedServer(slow) as server:
        http = client(timeout_s=60)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            with pytest.raises(httpx.TimeoutException):
                await http.get(f"{server.url}/version", timeout=0.2)
        finally:
            await http.aclose()
    assert loop.time() - started < 3


@pytest.mark.parametrize("cut", ["hang up", "half a body"])
async def test_a_connection_cut_mid_answer_is_a_transport_error(cut):
    def script(request):
        if cut == "hang up":
            return None
        return Close(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial":')

    async with ScriptedServer(script) as server:
        http = client()
        try:
            with pytest.raises(httpx.TransportError) as info:
                await http.post(f"{server.url}/v1/chat", json={})
        finally:
            await http.aclose()
    assert not isinstance(info.value, httpx.TimeoutException)


async def test_connections_are_bounded_and_reused():
    release = asyncio.Event()

    async def slow(request):
        await release.wait()
        return json_answer({"ok": True})

    async with ScriptedServer(slow) as server:
        # a connect timeout shorter than the wait: waiting for a pooled connection is not connecting
        http = AiohttpHTTP(3, timeout_s=5, connect_timeout_s=0.1)
        try:
            calls = [asyncio.create_task(http.post(f"{server.url}/v1/x", json={"i": i})) for i in range(9)]
            await until(lambda: len(server.requests) == 3)
            await asyncio.sleep(0.3)  # longer than the connect timeout
            assert len(server.requests) == 3  # the other six wait for a pooled connection
            release.set()
            answers = await asyncio.gather(*calls)
        finally:
            await http.aclose()
    assert [a.status_code for a in answers] == [200] * 9
    assert server.most_connections == 3 and server.connections_seen == 3


async def test_closed_client_refuses_new_requests():
    http = client()
    await http.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await http.get("http://127.0.0.1:1/version")


async def test_the_backend_retries_over_aiohttp_and_honours_retry_after():
    answers = iter([
        json_answer({"error": {"message": "busy"}}, 503, "Retry-After: 0.2"),
        None,  # then the connection drops
        json_answer({"model": "m", "choices": [{"message": {"content": "yes"}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
    ])
    async with ScriptedServer(lambda r: next(answers)) as server:
        http = client()
        llm = OpenAICompatClient(role="judge", model="m", base_urls=[f"{server.url}/v1"], http=http, kind="generic",
                                 max_retries=2, backoff_base_s=0.001)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            result = await llm.chat(ChatRequest(messages=[{"role": "user", "content": "hi"}], stage="verdict", max_tokens=2))
        finally:
            await http.aclose()
    assert result.text == "yes" and result.prompt_tokens == 3
    assert len(server.requests) == 3
    assert loop.time() - started >= 0.2  # waited as Retry-After asked


async def test_the_backend_gives_up_with_the_servers_message():
    async with ScriptedServer(lambda r: json_answer({"error": {"message": "engine dead"}}, 500)) as server:
        http = client()
        llm = OpenAICompatClient(role="judge", model="m", base_urls=[f"{server.url}/v1"], http=http, kind="generic",
                                 max_retries=1, backoff_base_s=0.001)
        try:
            with pytest.raises(LLMUnavailable, match="engine dead"):
                await llm.chat(ChatRequest(messages=[{"role": "user", "content": "hi"}], stage="verdict", max_tokens=2))
        finally:
            await http.aclose()
    assert len(server.requests) == 2


async def test_the_setting_picks_the_client(monkeypatch):
    monkeypatch.delenv("CAT_LLM_HTTP_CLIENT", raising=False)
    from cat_reward.backends.http_pool import PooledHTTP
    from cat_reward.settings import Settings
    from cat_reward.wiring import open_llm_http

    default = open_llm_http(Settings(llm_max_inflight=16))
    chosen = open_llm_http(Settings(llm_http_client="httpx", llm_max_inflight=16))
    try:
        assert isinstance(default, AiohttpHTTP) and default.max_connections == 32  # both roles share it
        assert isinstance(chosen, PooledHTTP)
    finally:
        await default.aclose()
        await chosen.aclose()


async def test_redirects_are_answers_not_followed():
    async with ScriptedServer(lambda r: http_answer(307, b"", "Location: /elsewhere")) as server:
        http = client()
        try:
            answer = await http.post(f"{server.url}/v1/chat", json={})
        finally:
            await http.aclose()
    assert answer.status_code == 307 and len(server.requests) == 1  # as httpx: the backend sees the 307


async def test_idle_connections_are_dropped_before_a_uvicorn_server_drops_them(monkeypatch):
    from cat_reward.backends import aiohttp_pool

    assert aiohttp_pool.KEEPALIVE_S < 5  # uvicorn's (and so vLLM's) keep-alive timeout
    monkeypatch.setattr(aiohttp_pool, "KEEPALIVE_S", 0.3)
    async with ScriptedServer(lambda r: json_answer({"ok": True})) as server:
        http = client()
        try:
            await http.get(f"{server.url}/version")
            await http.get(f"{server.url}/version")
            assert server.connections_seen == 1  # reused while fresh
            await asyncio.sleep(1.5)  # idle past the keep-alive time (aiohttp checks about each second)
            await http.get(f"{server.url}/version")
        finally:
            await http.aclose()
    assert server.connections_seen == 2  # a new connection, not the stale one


async def test_the_proxy_variables_are_honoured(monkeypatch):
    async with ScriptedServer(lambda r: json_answer({"via": "proxy"})) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost,bypassed.example")
        for name in ("http_proxy", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        http = client()  # reads the environment when made
        try:
            answer = await http.post("http://judge.example:8001/v1/chat", json={"n": 1})
            assert answer.json() == {"via": "proxy"}
            assert http._proxy_for("http://bypassed.example/v1") is None
            assert http._proxy_for("http://judge.example:8001/v1/x") == proxy.url
        finally:
            await http.aclose()
    [sent] = proxy.requests
    assert sent["path"] == "http://judge.example:8001/v1/chat"  # absolute form: a proxied request
    assert sent["body"] == b'{"n":1}'


async def test_a_proxy_written_without_a_scheme_means_http(monkeypatch):
    async with ScriptedServer(lambda r: json_answer({"via": "proxy"})) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removeprefix("http://"))
        for name in ("http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        http = client()
        try:
            answer = await http.post("http://judge.example/v1/chat", json={})
        finally:
            await http.aclose()
    assert answer.json() == {"via": "proxy"} and proxy.requests[0]["path"] == "http://judge.example/v1/chat"


def test_a_socks_proxy_is_refused_when_the_client_is_made(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "NO_PROXY", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ValueError, match="SOCKS"):
        client()


async def test_a_slow_dns_lookup_is_a_connect_timeout(monkeypatch):
    import aiohttp

    async def never_answers(self, host, port=0, family=socket.AF_INET):
        await asyncio.sleep(30)

    monkeypatch.setattr(aiohttp.ThreadedResolver, "resolve", never_answers)
    http = client(connect_timeout_s=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(httpx.ConnectTimeout):
            await http.post("http://judge.example:8001/v1/chat", json={})
    finally:
        await http.aclose()
    assert loop.time() - started < 3


async def test_a_server_that_stops_reading_a_large_body_is_a_timeout():
    done = asyncio.Event()

    async def never_read(reader, writer):
        await done.wait()  # accepts, reads nothing: the client's writes fill the socket buffers
        writer.close()

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    http = client(timeout_s=0.3, connect_timeout_s=0.2)  # the whole call: at most 0.2 + 2 * 0.3 s
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(httpx.TimeoutException):
            await http.post(f"{url}/v1/completions", json={"prompt": ["x" * 1_000_000] * 16})
    finally:
        await http.aclose()
        done.set()
        server.close()
        await asyncio.sleep(0.05)  # the handler closes its side
    assert loop.time() - started < 4


async def test_a_large_body_arrives_whole_with_its_length():
    async with ScriptedServer(lambda r: json_answer({"got": len(r["body"])})) as server:
        http = client()
        try:
            answer = await http.post(f"{server.url}/v1/completions", json={"prompt": ["x" * 600_000] * 3})
        finally:
            await http.aclose()
    [sent] = server.requests
    assert "transfer-encoding" not in sent["headers"]
    assert int(sent["headers"]["content-length"]) == len(sent["body"]) == answer.json()["got"] > 1 << 20
    assert json.loads(sent["body"]) == {"prompt": ["x" * 600_000] * 3}


async def test_long_header_lines_are_read_and_a_callers_content_type_is_kept():
    long_cookie = "a" * 20_000
    async with ScriptedServer(lambda r: json_answer({"ok": True}, 200, f"Set-Cookie: c={long_cookie}")) as server:
        http = client()
        try:
            answer = await http.post(f"{server.url}/v1/chat", json={}, headers={"content-type": "application/json; charset=utf-8"})
        finally:
            await http.aclose()
    assert answer.status_code == 200 and len(answer.headers["set-cookie"]) == 20_002
    assert server.requests[0]["headers"]["content-type"] == "application/json; charset=utf-8"
    assert server.requests[0]["body"] == b"{}"


@pytest.fixture
def self_signed(tmp_path):
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("no openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def test_https_trusts_what_httpx_trusts(self_signed, monkeypatch):
    import ssl

    cert, key = self_signed
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with ScriptedServer(lambda r: json_answer({"tls": True}), ssl=context) as server:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        http = client()
        try:  # a certificate nobody vouches for: refused, as a transport error the backend retries
            with pytest.raises(httpx.TransportError):
                await http.get(f"{server.url}/version")
        finally:
            await http.aclose()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # httpx's way of trusting a private CA
        http = client()
        try:
            answer = await http.get(f"{server.url}/version")
        finally:
            await http.aclose()
    assert answer.json() == {"tls": True}


@pytest.mark.parametrize("value", [float("nan"), [float("inf")], {"a": 1, "b": float("-inf")}, {"p": ["x", float("nan")]}])
def test_encode_refuses_nan_and_infinity_wherever_they_sit(value):
    from cat_reward.backends.aiohttp_pool import _encode

    with pytest.raises(ValueError):
        _encode(value)


def test_encode_checks_again_only_when_a_null_value_may_be_present(monkeypatch):
    from cat_reward.backends import aiohttp_pool

    calls = []
    real = aiohttp_pool.jsonlib.dumps
    monkeypatch.setattr(aiohttp_pool.jsonlib, "dumps", lambda v, **kw: calls.append(v) or real(v, **kw))
    text = {"prompt": ["the null hypothesis is rejected; nullable, null." * 2000]}
    assert aiohttp_pool._encode(text) == orjson.dumps(text) and calls == []
    for value in (None, [None], {"seed": None}, {"a": [1, None]}):
        assert aiohttp_pool._encode(value) == orjson.dumps(value)
    assert len(calls) == 4
