"""Fused synthesis and rubric: the anchor writes the reference and its criteria in one
generation (one JSON object with "reference" and "criteria"), instead of the paper's two
sequential calls. An option (``GroupOptions.fused``), off by default.

It saves one anchor round trip and the second prompt's prefill (the reference is not sent
back in). The reference is still written before the criteria (the schema orders the keys), so
the criteria are conditioned on it as in the two-step pipeline; but they are also conditioned
on the rollouts, which the two-step rubric prompt does not show.

Robustness mirrors the two steps: a reply without a usable reference is asked again (up to
``rubric_attempts`` calls), then fails as ``SynthesisFailed``; too few distinct criteria are
topped up from the reference with the regular rubric prompt, then fail as
``RubricGenerationFailed``.
"""

from __future__ import annotations

import json

from .context import GroupContext
from .conversation import render_question
from .errors import SynthesisFailed
from .hacking import anchor_inputs
from .ports import ChatRequest
from .self_proposed_rubrics import (
    RESAMPLE_TEMPERATURE,
    _collect,
    _items_from_json_value,
    dedupe_criteria,
    rubric_messages,
    rubric_schema,
)
from .types import Criterion, Reference


def fused_schema(min_items: int, max_items: int) -> dict:
    criteria = rubric_schema(min_items, max_items)["properties"]["criteria"]
    return {
        "type": "object",
        "properties": {"reference": {"type": "string", "minLength": 1}, "criteria": criteria},
        "required": ["reference", "criteria"],
        "additionalProperties": False,
    }


def fused_messages(ctx: GroupContext) -> list[dict[str, str]]:
    group, opts, prompts = ctx.group, ctx.options, ctx.prompts
    texts, _ = anchor_inputs(ctx)
    responses = "\n\n".join(
        prompts.render("response.item", number=str(i + 1), response=r.strip()) for i, r in enumerate(texts)
    )
    question = ""
    if opts.include_question:
        question = prompts.render("question.block", question=render_question(group.prompt)) + "\n\n"
    user = prompts.render(
        "fused.user",
        question=question,
        count=str(len(texts)),
        responses=responses,
        min_criteria=str(opts.min_criteria),
        max_criteria=str(opts.max_criteria),
    )
    return [{"role": "system", "content": prompts.render("fused.system")}, {"role": "user", "content": user}]


def parse_fused(text: str) -> tuple[str, list[str]]:
    """The reference and the candidate criteria of a fused reply ("" and [] when absent)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            items = _items_from_json_value(value) or []
            return value["reference"].strip(), [i.strip() for i in items if isinstance(i, str)]
        start = text.find("{", start + 1)
    return "", []


async def fused_reference_and_rubric(ctx: GroupContext) -> tuple[Reference, list[Criterion], dict]:
    opts = ctx.options
    messages = fused_messages(ctx)
    sampling_tokens = opts.synthesis.max_tokens + opts.rubric.max_tokens
    reference_text, candidates, result = "", [], None
    attempts = 0
    forced = False
    while attempts < opts.rubric_attempts and not reference_text:
        attempts += 1
        temperature = opts.synthesis.temperature if attempts == 1 else max(opts.synthesis.temperature, RESAMPLE_TEMPERATURE)
        result = await ctx.anchor(
            ChatRequest(
                messages=messages,
                stage="fused",
                max_tokens=sampling_tokens,
                temperature=temperature,
                top_p=opts.synthesis.top_p,
                seed=None if opts.seed is None else opts.seed + attempts - 1,
                json_schema=fused_schema(opts.min_criteria, opts.max_criteria),
            )
        )
        forced = forced or result.forced
        reference_text, candidates = parse_fused(result.text)
    if not reference_text:
        raise SynthesisFailed(f"the anchor's fused reply held no reference in {attempts} attempt(s)")
    details: dict = {"finish_reason": result.finish_reason, "fused": True}
    if result.finish_reason == "length":
        details["truncated"] = True
    left_out = anchor_inputs(ctx)[1]
    if left_out:
        details["rollouts_left_out"] = left_out  # flagged as injections: the anchor did not read them
    reference = Reference(text=reference_text, aggregator="synthesis", details=details)

    # Too few distinct criteria: top up from the reference, as the two-step pipeline asks.
    rubric, collected = await _collect(
        ctx, rubric_messages(ctx, reference), criteria=dedupe_criteria(candidates), max_calls=opts.rubric_attempts - 1
    )
    info = {
        "attempts": attempts,
        "top_ups": collected["attempts"],
        "structured_output": forced or collected["structured_output"],
        "fused": True,
    }
    return reference, rubric, info
