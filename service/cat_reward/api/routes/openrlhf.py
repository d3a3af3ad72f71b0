"""POST /openrlhf/reward: OpenRLHF's remote reward protocol (``--reward.remote_url``).

OpenRLHF posts ``{"query": [...], "prompts": [...], "labels": [...]}``, where each query is the
prompt followed by the response, decoded with special tokens, and reads back
``{"rewards": [...], "scores": [...], "extra_logs": {...}}``, one value per query. Since
OpenRLHF 0.9.1 each request holds ONE sample, sent as soon as it is generated; older versions
send contiguous chunks of the batch. Either way every query is a sample of its prompt's group:

- the response is the query minus its prompt (a prompt that is not a prefix of its query is a
  422) minus trailing special tokens (``CAT_OPENRLHF_STRIP_TOKENS``);
- samples are grouped by prompt in *rolling* groups (see ``assembly/rolling.py``): a prompt's
  current generation collects ``CAT_OPENRLHF_GROUP_SIZE`` samples (OpenRLHF's
  ``--rollout.n_samples_per_prompt``), is scored once, and the prompt's next sample opens the
  next generation (the same prompt comes back every step and epoch);
- mode and options come from ``CAT_OPENRLHF_MODE`` / ``CAT_OPENRLHF_OPTIONS``; a non-empty label
  is the caller's reference (aggregator ``given``) unless ``CAT_OPENRLHF_USE_LABELS=false``.

A reward that cannot be computed is never sent as a number: the request fails with 502
``reward_unavailable`` naming the query and the reason. OpenRLHF's client retries a failed
request 5 times (1 s apart); a retry lands on the same sample of the same group (within
``CAT_OPENRLHF_RETRY_WINDOW_S``), so it gets the same answer without new LLM calls, and then
OpenRLHF stores no reward for that sample, so the step fails loudly instead of training on a
made-up 0. A group whose scoring failed (e.g. the judge was down: 503) is scored again when
the retries come.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...assembly import GroupConflict, GroupFailed, RollingGroups
from ...rewarding import group_key
from ..deps import services_of
from ..errors import HTTPProblem
from ..mapping import sample_job_of, samples_response, status_for_type
from ..schemas import ErrorResponse, SamplesRequest, SamplesResponse
from .rewards import ERROR_RESPONSES

router = APIRouter(tags=["trainers"])


class OpenRLHFRequest(BaseModel):
    """What OpenRLHF's remote reward client posts (extra fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    query: list[str] = Field(
        description="Prompt + response, decoded with special tokens, one per sample. Empty lists (what OpenRLHF sends "
        "to every URL after the first) are answered at once with empty lists."
    )
    prompts: list[str] = Field(description="The prompt of each query (a prefix of it).")
    labels: list[str | bool | int | float | None] | None = Field(
        default=None,
        description="The dataset's label of each query (text, number or boolean, taken as it is); a non-empty one "
        "is used as the reference, as text.",
    )


class OpenRLHFResponse(BaseModel):
    rewards: list[float] = Field(description="One reward per query, for the advantages.")
    scores: list[float] = Field(description="The same rewards clipped to [0, 1], for dynamic filtering.")
    extra_logs: dict[str, list[float]] = Field(
        description="Per-query numbers OpenRLHF logs: cat_group_scored (samples the group was scored with), "
        "cat_partial_group (1 when scored at its deadline with fewer than the group size)."
    )


def strip_special(text: str, tokens: list[str]) -> str:
    """Remove trailing special tokens (and the whitespace around them) from a decoded response."""
    while True:
        stripped = text.rstrip()
        for token in tokens:
            if token and stripped.endswith(token):
                stripped = stripped[: -len(token)]
                break
        else:
            return stripped
        text = stripped


def _series(prompt: str, mode: str) -> str:
    return "openrlhf:" + hashlib.sha256(f"{mode}\x00{prompt}".encode()).hexdigest()[:32]


@router.post(
    "/openrlhf/reward",
    response_model=OpenRLHFResponse,
    responses={
        **ERROR_RESPONSES,
        409: {"model": ErrorResponse, "description": "A sample contradicts its group, or the group was incomplete at its deadline."},
        502: {"model": ErrorResponse, "description": "A reward could not be computed (`reward_unavailable`), or the "
              "anchor or judge produced unusable output."},
    },
    summary="OpenRLHF remote reward (--reward.remote_url)",
    description="OpenRLHF's remote reward protocol. Each query is grouped with the other samples of its prompt "
    "(CAT_OPENRLHF_GROUP_SIZE of them, in rolling per-prompt groups); the request returns once its groups are "
    "scored. A reward that cannot be computed fails the request with 502 `reward_unavailable`, never a 0.",
)
async def openrlhf_reward(body: OpenRLHFRequest, request: Request) -> OpenRLHFResponse:
    services = services_of(request)
    settings = services.settings
    n = len(body.query)
    if len(body.prompts) != n:
        raise HTTPProblem(422, "invalid_request", f"{len(body.prompts)} prompts for {n} queries", param="prompts")
    labels = list(body.labels) if body.labels is not None else [None] * n
    if len(labels) != n:
        raise HTTPProblem(422, "invalid_request", f"{len(labels)} labels for {n} queries", param="labels")

    if n == 0:  # OpenRLHF's client sends this to every URL but the first: answer at once, no judge call
        return OpenRLHFResponse(rewards=[], scores=[], extra_logs={"cat_group_scored": [], "cat_partial_group": []})

    mode = settings.openrlhf_mode or settings.default_mode
    requests: list[SamplesRequest] = []
    for i, (query, prompt, label) in enumerate(zip(body.query, body.prompts, labels)):
        if not prompt.strip():
            raise HTTPProblem(422, "invalid_request", f"prompt {i} is empty", param=f"prompts.{i}")
        if not query.startswith(prompt):
            raise HTTPProblem(
                422,
                "invalid_request",
                f"prompt {i} is not a prefix of query {i}: the response cannot be recovered "
                "(OpenRLHF sends query = prompt + response)",
                param=f"query.{i}",
            )
        response = strip_special(query[len(prompt):], settings.openrlhf_strip_tokens)
        reference = str(label) if settings.openrlhf_use_labels and label is not None and str(label).strip() else None
        try:
            requests.append(
                SamplesRequest.model_validate(
                    {
                        "prompt": prompt,
                        "samples": [{"rollout": response}],
                        "group": {
                            "id": "pending",
                            "size": settings.openrlhf_group_size,
                            "deadline_s": settings.openrlhf_deadline_s,
                        },
                        "mode": mode,
                        "reference": reference,
                        "options": settings.openrlhf_options,
                    }
                )
            )
        except ValidationError as exc:
            raise HTTPProblem(
                500, "misconfigured", f"CAT_OPENRLHF_OPTIONS is not valid SampleOptions (RewardOptions for samples): {exc.errors()[0]['msg']}"
            ) from exc

    rolling = RollingGroups(
        services.samples.assembler.store, ttl_s=2 * settings.group_ttl_s, retry_window_s=settings.openrlhf_retry_window_s
    )

    defaults = services.rewards.defaults

    async def one(request: SamplesRequest) -> SamplesResponse:
        def with_id(group_id: str) -> SamplesRequest:
            return request.model_copy(update={"group": request.group.model_copy(update={"id": group_id})})

        async def submit(group_id: str) -> SamplesResponse:
            job = sample_job_of(with_id(group_id), defaults, settings.default_mode)
            return samples_response(await services.samples.submit(job))

        return await rolling.submit(
            _series(request.prompt, mode),
            submit,
            lambda group_id: group_key(request.prompt, request.mode, group_id, None),
        )

    # Every sample is waited for, even when one fails: their groups may need each other.
    outcomes = await asyncio.gather(*[one(r) for r in requests], return_exceptions=True)
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, BaseException):
            raise _as_problem(outcome, i, n)

    rewards: list[float] = []
    partial: list[float] = []
    scored: list[float] = []
    for i, outcome in enumerate(outcomes):
        reward = outcome.rewards[0]
        if reward is None:
            detail = outcome.details[0]
            raise HTTPProblem(
                502,
                "reward_unavailable",
                f"the reward of query {i} could not be computed: {detail.error or 'no reason given'} "
                f"(group {outcome.group.key}, index {outcome.indices[0]}); refusing to send a made-up number",
                param=f"query.{i}",
            )
        rewards.append(float(reward))
        partial.append(1.0 if outcome.group.partial else 0.0)
        scored.append(float(outcome.group.scored))
    return OpenRLHFResponse(
        rewards=rewards,
        scores=[min(1.0, max(0.0, r)) for r in rewards],
        extra_logs={"cat_group_scored": scored, "cat_partial_group": partial},
    )


def _as_problem(exc: BaseException, index: int, n: int) -> BaseException:
    where = f" (query {index})" if n > 1 else ""
    if isinstance(exc, GroupConflict):
        return HTTPProblem(409, "group_conflict", f"{exc}{where}", param=f"query.{index}")
    if isinstance(exc, GroupFailed):
        error: dict[str, Any] = exc.error
        return HTTPProblem(
            status_for_type(error.get("type", "internal_error")),
            error.get("type", "group_failed"),
            error.get("message", "group scoring failed") + where,
            param=error.get("param"),
            retry_after=error.get("retry_after"),
        )
    return exc  # CatError and the rest: the app's error handlers map them
