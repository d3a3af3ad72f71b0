"""POST /rewards and POST /rewards/batch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from ..deps import services_of
from ..mapping import batch_response, job_of
from ..hotpath import GuardedJSONRoute
from ..responses import ResponseCodec
from ..schemas import BatchRequest, BatchResponse, ErrorResponse, RewardRequest, RewardResponse

router = APIRouter(tags=["rewards"])

ERROR_RESPONSES = {
    401: {"model": ErrorResponse, "description": "No API key, or an unknown one (when keys are configured)."},
    403: {"model": ErrorResponse, "description": "The key lacks the `rewards` scope."},
    413: {"model": ErrorResponse, "description": "The body is over CAT_MAX_BODY_BYTES."},
    422: {"model": ErrorResponse, "description": "Invalid request; `error.param` names the field."},
    429: {"model": ErrorResponse, "description": "Over the key's rate limit; retry after `Retry-After`."},
    502: {"model": ErrorResponse, "description": "The anchor or judge produced unusable output."},
    503: {
        "model": ErrorResponse,
        "description": "The anchor or judge is unreachable (`llm_unavailable`), or this process has no room for the "
        "group now (`overloaded`); retry after `Retry-After`.",
    },
}
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Same key, same record: a retried call never writes a second audit record.",
    ),
]


async def rewards(body: RewardRequest, request: Request, idempotency_key: IdempotencyKey = None) -> Response:
    services = services_of(request)
    service = services.rewards
    scored = await service.score(job_of(body, service.defaults, services.settings.default_mode), idempotency_key)
    return REWARD_RESPONSE.response(scored.document)  # validated against RewardResponse, as response_model would


REWARD_RESPONSE = ResponseCodec(RewardResponse, rewards, "POST /rewards")
# As @router.post would add it, with the route class that answers the common request itself.
router.add_api_route(
    "/rewards",
    rewards,
    methods=["POST"],
    response_model=RewardResponse,
    responses=ERROR_RESPONSES,
    summary="Score one group of rollouts with CaT",
    route_class_override=GuardedJSONRoute,
)


@router.post(
    "/rewards/batch",
    response_model=BatchResponse,
    responses=ERROR_RESPONSES,
    summary="Score several groups concurrently",
    description="Each group succeeds or fails on its own (`ok`, `error`), except when an LLM backend is "
    "unreachable or the service is overloaded: then the whole batch answers 503, so no group is silently dropped. "
    "A batch is admitted whole or not at all.",
)
async def rewards_batch(
    body: BatchRequest, request: Request, idempotency_key: IdempotencyKey = None
) -> BatchResponse:
    services = services_of(request)
    if not body.groups:  # nothing to score: answered at once, no admission, no judge call
        return BatchResponse(results=[])
    service = services.rewards
    mode = services.settings.default_mode
    jobs = [job_of(g, service.defaults, mode, prefix=f"groups.{i}.") for i, g in enumerate(body.groups)]
    return batch_response(await service.score_batch(jobs, idempotency_key))
