"""The audit history: GET /rubrics/{id} and GET /rubrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from ...rewarding import prompt_hash as hash_prompt
from ...storage import StoreUnavailable
from ..deps import ServicesDep
from ..errors import HTTPProblem
from ..schemas import NO_NUL, ErrorResponse, RecordOut, RecordPage, RecordSummary

router = APIRouter(tags=["history"])
_LIST_PARAMS = {"prompt", "prompt_hash", "run_id", "step", "limit", "cursor", "api_key"}


def _history(services):
    if services.history is None:
        raise HTTPProblem(404, "history_disabled", "this service runs without an audit history")
    return services.history


@router.get(
    "/rubrics/{rubric_id}",
    response_model=RecordOut,
    responses={
        401: {"model": ErrorResponse, "description": "No API key, or an unknown one."},
        403: {"model": ErrorResponse, "description": "The key lacks the `audit` scope."},
        404: {"model": ErrorResponse, "description": "No record with this id."},
        429: {"model": ErrorResponse, "description": "Over the key's rate limit."},
        503: {"model": ErrorResponse, "description": "The history database is unreachable."},
    },
    summary="One scored group: prompt, rollouts, reference, criteria, every verdict, rewards, models",
)
async def get_rubric(rubric_id: str, services: ServicesDep) -> RecordOut:
    try:
        record = await _history(services).get(rubric_id)
    except StoreUnavailable as exc:
        raise HTTPProblem(503, "history_unavailable", f"the history database is unreachable: {exc}", retry_after=5) from exc
    if record is None:
        raise HTTPProblem(
            404,
            "not_found",
            f"no record with id {rubric_id!r}; ids are the `record_id` (or `rubric_id`) of POST /rewards responses",
            param="rubric_id",
        )
    return RecordOut.model_validate(record)


@router.get(
    "/rubrics",
    response_model=RecordPage,
    responses={
        401: {"model": ErrorResponse, "description": "No API key, or an unknown one."},
        403: {"model": ErrorResponse, "description": "The key lacks the `audit` scope."},
        422: {"model": ErrorResponse, "description": "Bad filter or cursor."},
        429: {"model": ErrorResponse, "description": "Over the key's rate limit."},
        503: {"model": ErrorResponse, "description": "The history database is unreachable."},
    },
    summary="The history, newest first, filtered by prompt, run and step, paginated",
)
async def list_rubrics(
    request: Request,
    services: ServicesDep,
    prompt: Annotated[str | None, Query(description="A plain-text prompt (hashed here).")] = None,
    prompt_hash: Annotated[
        str | None, Query(pattern="^[0-9a-f]{64}$", description="`prompt_hash` from a reward response (sha256, hex).")
    ] = None,
    run_id: Annotated[str | None, Query(pattern=NO_NUL, description="`metadata.run_id` of the groups.")] = None,
    step: Annotated[
        int | None, Query(ge=-(2**63), le=2**63 - 1, description="The training step (`metadata.step`).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern="^[A-Za-z0-9_-]+$", description="`next_cursor` of the previous page (issued here, opaque)."),
    ] = None,
) -> RecordPage:
    unknown = sorted(set(request.query_params) - _LIST_PARAMS)
    if unknown:  # a typo ("run=") must not silently widen the listing
        raise HTTPProblem(422, "invalid_request", f"unknown query parameter(s): {', '.join(unknown)}", param=unknown[0])
    if prompt is not None and prompt_hash is not None:
        raise HTTPProblem(422, "invalid_request", "give either prompt or prompt_hash, not both", param="prompt_hash")
    wanted = hash_prompt(prompt) if prompt is not None else prompt_hash
    try:
        records, next_cursor = await _history(services).list(
            prompt_hash=wanted, run_id=run_id, step=step, limit=limit, cursor=cursor
        )
    except ValueError as exc:
        raise HTTPProblem(422, "invalid_request", f"invalid cursor: {exc}", param="cursor") from exc
    except StoreUnavailable as exc:
        raise HTTPProblem(503, "history_unavailable", f"the history database is unreachable: {exc}", retry_after=5) from exc
    return RecordPage(items=[RecordSummary.from_record(r) for r in records], next_cursor=next_cursor)
