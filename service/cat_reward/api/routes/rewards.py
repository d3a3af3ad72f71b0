"""POST /rewards and POST /rewards/batch."""

from __future__ import annotations

from fastapi import APIRouter

from ...engine.concurrency import gather_bounded
from ...engine.errors import CatError, InvalidGroup, LLMUnavailable
from ...engine.types import Group
from ...settings import Settings
from ..deps import ServicesDep
from ..errors import error_body
from ..schemas import BatchItem, BatchRequest, BatchResponse, ErrorResponse, RewardRequest, RewardResponse

router = APIRouter(tags=["rewards"])

ERROR_RESPONSES = {
    422: {"model": ErrorResponse, "description": "Invalid request; `error.param` names the field."},
    502: {"model": ErrorResponse, "description": "The anchor or judge produced unusable output."},
    503: {"model": ErrorResponse, "description": "The anchor or judge is unreachable; retry after `Retry-After`."},
}


def _to_group(request: RewardRequest, settings: Settings, prefix: str = "") -> Group:
    if len(request.rollouts) > settings.max_rollouts:
        raise InvalidGroup(
            f"{len(request.rollouts)} rollouts exceed the limit of {settings.max_rollouts} per group (CAT_MAX_ROLLOUTS)",
            param=f"{prefix}rollouts",
        )
    if request.reference is not None and request.options.aggregator not in (None, "given"):
        raise InvalidGroup(
            f"'reference' was sent but options.aggregator is {request.options.aggregator!r}; "
            "drop one, or use aggregator 'given'",
            param=f"{prefix}reference",
        )
    group = request.to_group(settings)
    if group.options.min_criteria > group.options.max_criteria:
        raise InvalidGroup("options.num_criteria exceeds options.max_criteria", param=f"{prefix}options.num_criteria")
    return group


@router.post(
    "/rewards",
    response_model=RewardResponse,
    responses=ERROR_RESPONSES,
    summary="Score one group of rollouts with CaT",
)
async def rewards(body: RewardRequest, services: ServicesDep) -> RewardResponse:
    group = _to_group(body, services.settings)
    outcome = await services.pipeline.score(group)
    return RewardResponse.from_outcome(outcome)


@router.post(
    "/rewards/batch",
    response_model=BatchResponse,
    responses=ERROR_RESPONSES,
    summary="Score several groups concurrently",
    description="Each group succeeds or fails on its own (`ok`, `error`), except when an LLM backend is "
    "unreachable: then the whole batch answers 503, so no group is silently dropped.",
)
async def rewards_batch(body: BatchRequest, services: ServicesDep) -> BatchResponse:
    settings = services.settings
    if len(body.groups) > settings.max_groups_per_batch:
        raise InvalidGroup(
            f"{len(body.groups)} groups exceed the limit of {settings.max_groups_per_batch} per batch "
            "(CAT_MAX_GROUPS_PER_BATCH)",
            param="groups",
        )
    groups = [_to_group(g, settings, prefix=f"groups.{i}.") for i, g in enumerate(body.groups)]

    async def one(index: int, group: Group) -> BatchItem:
        try:
            outcome = await services.pipeline.score(group)
        except LLMUnavailable:
            raise
        except CatError as exc:
            return BatchItem(index=index, ok=False, error=error_body(exc))
        return BatchItem(index=index, ok=True, result=RewardResponse.from_outcome(outcome))

    results = await gather_bounded([one(i, g) for i, g in enumerate(groups)], limit=settings.batch_concurrency)
    return BatchResponse(results=results)
