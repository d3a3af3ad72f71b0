"""The wire edge of ``cat-reward score``: a file row is read as a ``POST /rewards`` body, and
mapped to the service's domain job here, as the routes map theirs. The offline package receives
this reader from the command line (the composition root) and never imports the HTTP layer."""

from __future__ import annotations

from pydantic import ValidationError

from ..engine.errors import CatError
from ..offline.inputs import BadRow
from .errors import _loc_to_param
from .mapping import job_of, status_for
from .schemas import RewardRequest


class RewardRows:
    """Rows as ``POST /rewards`` bodies: validation, the body as sent, the job, an error's status."""

    @staticmethod
    def validate(body: dict) -> RewardRequest:
        """The row's body as ``POST /rewards`` reads it; ``BadRow`` names the field and the rule."""
        try:
            return RewardRequest.model_validate(body)
        except ValidationError as exc:
            details = sorted(
                ((_loc_to_param(("body", *e.get("loc", ())), e.get("type", "")), e.get("msg", "")) for e in exc.errors()),
                key=lambda d: -d[0].count("."),
            )
            raise BadRow("; ".join(f"{param}: {message}" for param, message in details[:3])) from None

    @staticmethod
    def normalized(request: RewardRequest) -> dict:
        """What is sent for a group (and what its key is computed from): the validated body."""
        return request.model_dump(mode="json", exclude_none=True, exclude_defaults=True)

    @staticmethod
    def job(request: RewardRequest, defaults, default_mode: str):
        return job_of(request, defaults, default_mode)

    @staticmethod
    def status(exc: CatError) -> int:
        return status_for(exc)


ROWS = RewardRows()
