"""One place maps errors to HTTP, into one envelope: ``{"error": {type, message, param, ...}}``."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine.errors import (
    CatError,
    GenerationFailed,
    InvalidGroup,
    LLMBadResponse,
    LLMRequestRejected,
    LLMUnavailable,
)
from .schemas import ErrorBody

log = logging.getLogger(__name__)
DEFAULT_RETRY_AFTER_S = 5.0


def status_for(exc: CatError) -> int:
    if isinstance(exc, (InvalidGroup, LLMRequestRejected)):
        return 422
    if isinstance(exc, LLMUnavailable):
        return 503
    if isinstance(exc, (LLMBadResponse, GenerationFailed)):
        return 502
    return 500


def error_body(exc: CatError) -> ErrorBody:
    retry_after = None
    if isinstance(exc, LLMUnavailable):
        retry_after = exc.retry_after or DEFAULT_RETRY_AFTER_S
    return ErrorBody(type=exc.type, message=exc.message, param=exc.param, retry_after=retry_after)


def error_response(status: int, body: ErrorBody) -> JSONResponse:
    headers = {}
    if body.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(body.retry_after)))
    return JSONResponse(status_code=status, content={"error": body.model_dump(exclude_none=True)}, headers=headers)


def _loc_to_param(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) if parts else "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CatError)
    async def _cat_error(request: Request, exc: CatError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("group failed: %s: %s", exc.type, exc.message)
        return error_response(status, error_body(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details = [
            {"param": _loc_to_param(tuple(e.get("loc", ()))), "message": e.get("msg", ""), "type": e.get("type", "")}
            for e in errors
        ]
        first = details[0] if details else {"param": "body", "message": "invalid request"}
        message = "; ".join(f"{d['param']}: {d['message']}" for d in details[:5]) or "invalid request"
        body = ErrorBody(type="invalid_request", message=message, param=first["param"], details=details)
        return error_response(422, body)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, ErrorBody(type=kind, message=str(exc.detail)))
