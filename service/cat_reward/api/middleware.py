"""A pure ASGI middleware: request id, access log line, and HTTP metrics by route template."""

from __future__ import annotations

import logging
import time
import uuid

from ..metrics import HTTP_LATENCY, HTTP_REQUESTS
from ..observability import request_id

log = logging.getLogger("cat_reward.access")


class ObservabilityMiddleware:
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
