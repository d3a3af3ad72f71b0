"""Structured JSON logs with a request id.

Each HTTP request gets an id (the caller's ``X-Request-ID`` or a new one), returned in the
response header, attached to every log line written while the request runs, and passed on to
the LLM backends in their own ``X-Request-ID`` header, so one reward can be followed from the
trainer to vLLM. Log lines carry no prompt or rollout text unless ``CAT_LOG_PAYLOADS`` is on.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("cat_request_id", default=None)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():  # fields passed with extra={...}
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))  # its lines carry URLs only


def request_id_headers() -> dict[str, str] | None:
    """The header that passes the current request id on to the LLM backends (aiohttp client)."""
    rid = request_id.get()
    return {"X-Request-ID": rid} if rid else None


async def inject_request_id(request) -> None:
    """httpx request hook: pass the current request id on to the LLM backends."""
    rid = request_id.get()
    if rid:
        request.headers["X-Request-ID"] = rid
