"""The edge for callers inside a Ray cluster (``cat_reward.ray_serve``): ``POST /rewards`` and
``POST /rewards/batch`` as a method call on a Serve deployment handle, with no HTTP.

Same wire schemas, same mapping to the service, same error envelope and statuses as the HTTP
routes: a call takes the request's JSON and an idempotency key, and gives back ``(status, JSON)``
exactly as the HTTP route would answer, so a client reads both the same way. There is no API key:
whoever can call a handle is inside the cluster already.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from ..engine.errors import CatError
from ..wiring import Services
from .errors import validation_error_body
from .mapping import batch_response, error_body, job_of
from .schemas import BatchRequest, ErrorBody, RewardRequest, RewardResponse

PATHS = ("/rewards", "/rewards/batch")
MAX_KEY_CHARS = 200  # as the Idempotency-Key header


def _error(body: ErrorBody) -> tuple[int, bytes]:
    return body.status, json.dumps({"error": body.model_dump(exclude_none=True)}).encode()


async def call(services: Services, path: str, body: bytes, idempotency_key: str | None = None) -> tuple[int, bytes]:
    """Answer one call as the HTTP route at ``path`` would: (status, JSON body)."""
    if path not in PATHS:
        return _error(ErrorBody(type="not_found", message=f"no handle route {path!r}; routes: {', '.join(PATHS)}", status=404))
    if idempotency_key is not None and not (0 < len(idempotency_key) <= MAX_KEY_CHARS):
        return _error(ErrorBody(
            type="invalid_request", message=f"idempotency_key must have 1 to {MAX_KEY_CHARS} characters",
            param="idempotency_key", status=422,
        ))
    rewards = services.rewards
    mode = services.settings.default_mode
    try:
        if path == "/rewards":
            request = RewardRequest.model_validate_json(body)
            scored = await rewards.score(job_of(request, rewards.defaults, mode), idempotency_key)
            return 200, RewardResponse.model_validate(scored.document).model_dump_json().encode()
        batch = BatchRequest.model_validate_json(body)
        jobs = [job_of(g, rewards.defaults, mode, prefix=f"groups.{i}.") for i, g in enumerate(batch.groups)]
        return 200, batch_response(await rewards.score_batch(jobs, idempotency_key)).model_dump_json().encode()
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_url=False)]
        return _error(validation_error_body(errors))
    except CatError as exc:
        return _error(error_body(exc))
