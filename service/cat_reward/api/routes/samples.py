"""POST /rewards/samples: rewards for trainers that send one sample (or part of a group) at a time."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ...assembly import GroupConflict, GroupFailed
from ..deps import services_of
from ..errors import HTTPProblem
from ..mapping import sample_job_of, samples_response, status_for_type
from ..schemas import ErrorResponse, SamplesRequest, SamplesResponse
from .rewards import ERROR_RESPONSES, IdempotencyKey

router = APIRouter(tags=["rewards"])


@router.post(
    "/rewards/samples",
    response_model=SamplesResponse,
    responses={
        **ERROR_RESPONSES,
        409: {"model": ErrorResponse, "description": "The samples contradict their group, or it was incomplete at its deadline."},
    },
    summary="Score samples that arrive separately, once their group is assembled",
    description="Samples are kept (in Redis when configured, so any replica may take any sample) until the group "
    "has `group.size` samples or its deadline passes; then it is scored once and every waiting request "
    "gets the rewards of its own samples. At the deadline a group with at least `group.min_size` samples is "
    "scored as it is (`group.partial`); one with fewer fails with 409 `group_incomplete`.",
)
async def rewards_samples(
    body: SamplesRequest, request: Request, idempotency_key: IdempotencyKey = None
) -> SamplesResponse:
    services = services_of(request)
    job = sample_job_of(body, services.rewards.defaults, services.settings.default_mode)
    if not body.samples:  # nothing to score: answered at once, no group is opened, no judge call
        services.samples.check(job)  # ... but the rest of the body is held to openapi.json all the same
        return SamplesResponse(rewards=[], indices=[], details=[], group=None, result=None)
    try:
        return samples_response(await services.samples.submit(job, idempotency_key))
    except GroupConflict as exc:
        raise HTTPProblem(409, "group_conflict", str(exc), param="samples") from exc
    except GroupFailed as exc:
        error = exc.error
        raise HTTPProblem(
            status_for_type(error.get("type", "internal_error")),
            error.get("type", "group_failed"),
            error.get("message", "group scoring failed"),
            param=error.get("param"),
            retry_after=error.get("retry_after"),
        ) from exc
