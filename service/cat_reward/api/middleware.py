"""The service's one pure ASGI middleware: request id, access log line and HTTP metrics by route
template, the request body limit, and the security headers of the dashboard's responses.

These were three layers (the dashboard's headers outermost, then the request id and metrics,
then the body limit); one layer does the same work in the same order, with the request's
headers read once and the metric children looked up once per (route, method, status).
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from ..metrics import HTTP_LATENCY_BY, HTTP_REQUESTS_BY
from ..observability import request_id
from .ui.rendering import STATIC_PREFIX, with_security_headers

log = logging.getLogger("cat_reward.access")
_NO_BODY_METHODS = ("GET", "HEAD", "OPTIONS")


class EdgeMiddleware:
    """For each HTTP request, from the outside in:

    - under ``/ui``: the CSP and friends on the response (``ui.rendering.with_security_headers``);
    - the request id (the caller's ``X-Request-ID`` when printable, at most 128 characters, else a
      new one) in ``observability.request_id`` while the request runs and in the response's
      ``x-request-id`` header; then the access log line and ``cat_http_*`` metrics, by route
      template (``unmatched`` when no route took the request), also for a 413 and for a request
      that failed (status 500);
    - bodies over ``max_bytes`` refused with 413 before anything parses them: by Content-Length
      when there is one, else while reading a chunked body."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, send) -> None:
        body = json.dumps(
            {
                "error": {
                    "type": "request_too_large",
                    "message": f"the request body is over the limit of {self.max_bytes} bytes (CAT_MAX_BODY_BYTES)",
                    "param": "body",
                    "status": 413,
                }
            }
        ).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        ui = path == "/ui" or path.startswith("/ui/")
        static = ui and path.startswith(STATIC_PREFIX + "/")
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
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
                if ui:
                    message["headers"] = with_security_headers(message["headers"], static)
            await send(message)

        try:
            await self._limited(scope, receive, send_with_id, headers)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            HTTP_REQUESTS_BY(template, method, status).inc()
            HTTP_LATENCY_BY(template, method).observe(elapsed)
            if log.isEnabledFor(logging.INFO):  # the line's fields are built only for a line written
                log.info(
                    "%s %s %s", method, template, status,
                    extra={"route": template, "method": method, "status": status, "duration_ms": round(elapsed * 1000, 2)},
                )
            request_id.reset(token)

    async def _limited(self, scope, receive, send, headers: dict) -> None:
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > self.max_bytes
            except ValueError:
                too_large = False
            if too_large:
                return await self._too_large(send)
            return await self.app(scope, receive, send)
        if scope.get("method") in _NO_BODY_METHODS:
            return await self.app(scope, receive, send)
        # No length given (chunked): read it here, within the limit, then hand it on.
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
