"""api.middleware.EdgeMiddleware against the three layers it replaced (kept here as they were:
the dashboard's security headers outermost, then request id + access log + metrics, then the
body limit): same statuses, headers in the same order, bodies, metric samples and log lines."""

import json
import logging
import time
import uuid

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.middleware import Middleware

from cat_reward.api import create_app
from cat_reward.api.middleware import EdgeMiddleware
from cat_reward.api.ui.rendering import SecurityHeadersMiddleware
from cat_reward.engine.ports import EquivalenceResult
from cat_reward.metrics import HTTP_LATENCY, HTTP_REQUESTS
from cat_reward.observability import request_id
from cat_reward.settings import Settings

from .scripts import roles

pytestmark = pytest.mark.anyio
log = logging.getLogger("cat_reward.access")
BODY = {"prompt": "What is 2 + 3?", "rollouts": ["\\boxed{5}", "\\boxed{6}", "five"], "mode": "rubric"}
MAX_BYTES = 4096


class OldObservability:  # api/middleware.py ObservabilityMiddleware before the merge
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming[:128] if incoming and incoming.isprintable() else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", rid.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(route=template, method=method, status=str(status)).inc()
            HTTP_LATENCY.labels(route=template, method=method).observe(elapsed)
            log.info(
                "%s %s %s", method, template, status,
                extra={"route": template, "method": method, "status": status, "duration_ms": round(elapsed * 1000, 2)},
            )
            request_id.reset(token)


class OldBodyLimit:  # api/middleware.py BodyLimitMiddleware before the merge
    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, send) -> None:
        body = json.dumps({"error": {
            "type": "request_too_large",
            "message": f"the request body is over the limit of {self.max_bytes} bytes (CAT_MAX_BODY_BYTES)",
            "param": "body",
            "status": 413,
        }}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_bytes
            except ValueError:
                too_large = False
            if too_large:
                return await self._too_large(send)
            return await self.app(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._too_large(send)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference.strip() == candidate.strip())


def make_app(old: bool):
    r, _, _ = roles()
    settings = Settings(api_keys="trainer:rewards,auditor:audit", max_body_bytes=MAX_BYTES)
    app = create_app(settings, roles=r, checker=ExactChecker(), with_history=False)
    if old:
        assert [m.cls for m in app.user_middleware] == [EdgeMiddleware]
        app.user_middleware = [
            Middleware(SecurityHeadersMiddleware), Middleware(OldObservability), Middleware(OldBodyLimit, max_bytes=MAX_BYTES),
        ]
    return app


def chunked(data: bytes, size: int = 1000):
    async def gen():
        for i in range(0, len(data), size):
            yield data[i:i + size]

    return gen()


def requests():
    """(method, url, kwargs) of requests through every branch of the layers."""
    trainer = {"Authorization": "Bearer trainer"}
    body = json.dumps(BODY).encode()
    big = json.dumps({**BODY, "rollouts": ["z" * 100] * 60}).encode()
    return [
        ("GET", "/healthz", {"headers": {"X-Request-ID": "given-id"}}),
        ("GET", "/healthz", {"headers": {"X-Request-ID": "x" * 300}}),  # cut to 128
        ("GET", "/healthz", {"headers": {"X-Request-ID": "bad\tid"}}),  # not printable: a new id
        ("GET", "/healthz", {}),
        ("POST", "/rewards", {"content": body, "headers": {"content-type": "application/json", "X-Request-ID": "r1"}}),
        ("POST", "/rewards", {"content": body, "headers": {**trainer, "content-type": "application/json", "X-Request-ID": "r2"}}),
        ("POST", "/rewards", {"content": big, "headers": {**trainer, "content-type": "application/json", "X-Request-ID": "r3"}}),
        ("POST", "/rewards", {"content": chunked(big), "headers": {**trainer, "content-type": "application/json", "X-Request-ID": "r4"}}),
        ("POST", "/rewards", {"content": chunked(body, 50), "headers": {**trainer, "content-type": "application/json", "X-Request-ID": "r5"}}),
        ("POST", "/rewards", {"content": b"{oops", "headers": {**trainer, "content-type": "application/json", "X-Request-ID": "r6"}}),
        ("POST", "/rewards", {"content": b"1", "headers": {**trainer, "content-type": "application/json", "content-length": "x1", "X-Request-ID": "r7"}}),
        ("GET", "/rewards", {"headers": {"X-Request-ID": "r8"}}),  # 405
        ("GET", "/no/such/route", {"headers": {"X-Request-ID": "r9"}}),
        ("GET", "/ui", {"headers": {"X-Request-ID": "u1"}}),
        ("GET", "/ui/login", {"headers": {"X-Request-ID": "u2"}}),
        ("GET", "/ui/static/ui.css", {"headers": {"X-Request-ID": "u3"}}),
        ("GET", "/ui/records", {"headers": {"Authorization": "Bearer auditor", "X-Request-ID": "u4"}}),
        ("POST", "/ui/login", {"content": chunked(b"k" * 5000), "headers": {"X-Request-ID": "u5"}}),  # 413 under /ui
        ("GET", "/rubrics/rb_x", {"headers": {"Authorization": "Bearer trainer", "X-Request-ID": "a1"}}),
        ("GET", "/boom", {"headers": {"X-Request-ID": "b1"}}),  # an unhandled error: 500 from outside the layers
    ]


def samples() -> dict:
    out = {}
    for metric in REGISTRY.collect():
        if metric.name in ("cat_http_requests", "cat_http_request_duration_seconds"):
            for s in metric.samples:
                if s.name.endswith("_created"):
                    continue
                key = (s.name, tuple(sorted(s.labels.items())))
                out[key] = s.value
    return out


async def run(old: bool, caplog):
    app = make_app(old)

    @app.get("/boom", include_in_schema=False)
    async def boom():
        raise RuntimeError("boom")

    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    answers, deltas, lines = [], [], []
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for method, url, kwargs in requests():
            before = samples()
            caplog.clear()
            response = await client.request(method, url, **kwargs)
            after = samples()
            headers = [(k, v) for k, v in response.headers.raw]
            rid = response.headers.get("x-request-id")
            given = kwargs.get("headers", {}).get("X-Request-ID", "")
            if rid is not None and not (given and given.isprintable()):
                assert len(rid) == 32 and int(rid, 16) >= 0  # a fresh uuid4
                headers = [(k, b"<new>" if k == b"x-request-id" else v) for k, v in headers]
            body = response.content
            if b"record_id" in body:  # the rubric id and the timings (so the length) differ between runs
                data = response.json()
                body = json.dumps(sorted(data)).encode()
                headers = [(k, b"<n>" if k == b"content-length" else v) for k, v in headers]
            answers.append((method, url, response.status_code, headers, body))
            changed = {}
            for key, value in after.items():
                if value != before.get(key, 0.0) and not key[0].endswith("_sum"):
                    changed[key] = value - before.get(key, 0.0)
            deltas.append(changed)
            access = [r for r in caplog.records if r.name == "cat_reward.access"]
            lines.append([
                (r.getMessage(), r.levelno, r.route, r.method, r.status, type(r.duration_ms).__name__) for r in access
            ])
    await lifespan.__aexit__(None, None, None)
    return answers, deltas, lines


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
async def test_one_layer_answers_as_the_three_did(caplog, level):
    caplog.set_level(level, logger="cat_reward.access")
    old = await run(True, caplog)
    new = await run(False, caplog)
    for before, after in zip(old[0], new[0]):
        assert before == after
    # Each request counted once, under the same labels, in both (latency buckets may differ).
    for before, after in zip(old[1], new[1]):
        assert {k: v for k, v in before.items() if "bucket" not in k[0]} == {
            k: v for k, v in after.items() if "bucket" not in k[0]
        }
        assert {k for k in before if k[0].endswith("_count")} == {k for k in after if k[0].endswith("_count")}
    assert old[2] == new[2]
    if level == logging.INFO:
        assert all(len(lines) == 1 for lines in new[2])
    else:
        assert all(lines == [] for lines in new[2])
    statuses = [a[2] for a in new[0]]
    assert {200, 401, 403, 404, 405, 413, 422, 500} <= set(statuses)  # every branch was taken
    assert any(k == b"content-security-policy" for a in new[0] for k, _ in a[3])  # the /ui branch too


async def test_a_disconnect_while_reading_a_chunked_body_is_counted_as_before(caplog):
    results = []
    for old in (True, False):
        app = make_app(old)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        sent = []
        messages = iter([{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}])

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        before = samples()
        scope = {"type": "http", "method": "POST", "path": "/rewards", "raw_path": b"/rewards", "query_string": b"",
                 "headers": [(b"authorization", b"Bearer trainer")], "root_path": "", "scheme": "http",
                 "server": ("test", 80), "client": ("c", 1), "http_version": "1.1", "asgi": {"version": "3.0"}}
        await app(scope, receive, send)
        after = samples()
        results.append((sent, {k: after[k] - before.get(k, 0.0) for k in after
                               if k[0] == "cat_http_requests_total" and after[k] != before.get(k, 0.0)}))
        await lifespan.__aexit__(None, None, None)
    assert results[0] == results[1]
    assert results[1][0] == [] and list(results[1][1].values()) == [1.0]  # nothing sent; counted as a 500


def test_remembered_metric_children_are_the_ones_labels_gives():
    from cat_reward.metrics import HTTP_LATENCY_BY, HTTP_REQUESTS_BY

    child = HTTP_REQUESTS_BY("/test/children", "GET", 200)
    assert child is HTTP_REQUESTS.labels(route="/test/children", method="GET", status="200")
    assert HTTP_REQUESTS_BY("/test/children", "GET", 200) is child  # looked up once
    assert HTTP_LATENCY_BY("/test/children", "GET") is HTTP_LATENCY.labels(route="/test/children", method="GET")
    before = REGISTRY.get_sample_value(
        "cat_http_requests_total", {"route": "/test/children", "method": "GET", "status": "200"}
    )
    child.inc()
    assert REGISTRY.get_sample_value(
        "cat_http_requests_total", {"route": "/test/children", "method": "GET", "status": "200"}
    ) == before + 1
