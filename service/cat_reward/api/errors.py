"""One place maps errors to HTTP, into one envelope: ``{"error": {type, message, param, ...}}``."""

from __future__ import annotations

import logging
import math
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine.errors import CatError
from .mapping import error_body
from .schemas import ErrorBody

log = logging.getLogger(__name__)


class HTTPProblem(Exception):
    """An HTTP-level condition outside the engine (unknown record, history down), in the same envelope."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.body = ErrorBody(type=type, message=message, param=param, retry_after=retry_after, status=status)


def error_response(status: int, body: ErrorBody) -> JSONResponse:
    headers = {}
    if body.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(body.retry_after)))
    return JSONResponse(status_code=status, content={"error": body.model_dump(exclude_none=True)}, headers=headers)


# Pydantic puts the tried member of a union into the location ("prompt.str", "prompt.list[ChatMessage].0");
# those tags are not fields the caller sent.
_UNION_TAG = re.compile(r"^(str|int|float|bool|list\[.*\]|dict\[.*\]|[A-Z]\w*)$")


def _loc_to_param(loc: tuple, kind: str = "") -> str:
    if kind == "json_invalid":
        return "body"
    if loc[:1] == ("body",):
        parts = [str(p) for p in loc[1:] if not (isinstance(p, str) and _UNION_TAG.match(p))]
    elif loc[:1] in (("query",), ("path",)):
        parts = [str(p) for p in loc[1:]]  # a parameter by its name, as the route's own errors name it
    else:
        parts = [str(p) for p in loc]
    return ".".join(parts) if parts else "body"


def validation_error_body(errors: list[dict]) -> ErrorBody:
    """The 422 body of a request that does not validate: every field at fault, the most specific
    first. ``errors`` are Pydantic's, located under ``body`` as FastAPI reports them."""
    details = [
        {
            "param": _loc_to_param(tuple(e.get("loc", ())), e.get("type", "")),
            "message": e.get("msg", ""),
            "type": e.get("type", ""),
        }
        for e in errors
    ]
    # The most specific location first: for a union (prompt: str | messages) that is the branch
    # the caller meant ("prompt.0.content"), not the other one ("prompt").
    details.sort(key=lambda d: -d["param"].count("."))
    first = details[0] if details else {"param": "body", "message": "invalid request"}
    message = "; ".join(f"{d['param']}: {d['message']}" for d in details[:5]) or "invalid request"
    return ErrorBody(type="invalid_request", message=message, param=first["param"], details=details, status=422)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CatError)
    async def _cat_error(request: Request, exc: CatError) -> JSONResponse:
        body = error_body(exc)
        if body.status >= 500:
            log.warning("group failed: %s: %s", exc.type, exc.message)
        return error_response(body.status, body)

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> JSONResponse:
        response = error_response(exc.status, exc.body)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_error_body(exc.errors()))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500, ErrorBody(type="internal_error", message=f"internal error: {type(exc).__name__}", status=500)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body that is not JSON at all (e.g. not UTF-8): bad input like any other
            return error_response(
                422, ErrorBody(type="invalid_request", message=f"body: {exc.detail}", param="body", status=422)
            )
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error_response(exc.status_code, ErrorBody(type=kind, message=str(exc.detail), status=exc.status_code))
        response.headers.update(getattr(exc, "headers", None) or {})  # e.g. Allow on a 405
        return response
