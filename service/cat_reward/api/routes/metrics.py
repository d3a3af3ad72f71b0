"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ... import metrics
from ..deps import ServicesDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def get_metrics(services: ServicesDep) -> Response:
    if services.history is not None:
        metrics.OUTBOX_DEPTH.set(services.history.outbox_depth())
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
