"""Self-proposed rubrics: the anchor turns the reference into binary, checkable criteria.

JSON is forced with structured output where the backend supports it and parsed robustly
where it does not (JSON anywhere in the text, then ``<criterion>`` tags, then a bulleted or
numbered list). Near-duplicates are removed; when fewer than the minimum remain, the anchor
is asked for more, up to ``rubric_attempts`` calls in all.
"""

from __future__ import annotations

import json
import re

from .context import GroupContext
from .conversation import render_question
from .errors import RubricGenerationFailed
from .ports import ChatRequest
from .types import Criterion, Reference, frozen_constructor
from .weighted_rubrics import DEFAULT_IMPORTANCE, MAX_PITFALLS, parse_weighted_criteria, weighted_rubric_schema

MIN_CRITERION_CHARS = 8
RESAMPLE_TEMPERATURE = 1.0
MAX_CRITERION_CHARS = 500
_XML_ITEM = re.compile(r"<criterion[^>]*>(.*?)</criterion>", re.IGNORECASE | re.DOTALL)
_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\(?\d{1,2}[.):])\s+(.+?)\s*$", re.MULTILINE)
_NON_WORD = re.compile(r"[^a-z0-9]+")
_ENUMERATION = re.compile(r"^\s*(?:\(?\d{1,2}[.):]|[-*\u2022]|criterion\s*\d{1,2}\s*[:.)-])\s*", re.IGNORECASE)


_criterion = frozen_constructor(Criterion)  # Criterion(...) without its frozen __setattr__ per field


def rubric_schema(min_items: int, max_items: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "criteria": {
                "type": "array",
                "items": {"type": "string", "minLength": 10, "maxLength": 300},
                "minItems": min_items,
                "maxItems": max_items,
            }
        },
        "required": ["criteria"],
        "additionalProperties": False,
    }


def _items_from_json_value(value) -> list[str] | None:
    if isinstance(value, dict):
        for key in ("criteria", "rubric", "items"):
            if key in value:
                return _items_from_json_value(value[key])
        return None
    if isinstance(value, list):
        items = []
        for item in value:
            if isinstance(item, str):
                items.append(item)
            elif isinstance(item, dict):
                text = item.get("criterion") or item.get("text") or item.get("description")
                if isinstance(text, str):
                    items.append(text)
        return items
    return None


def parse_criteria(text: str) -> list[str]:
    """Every candidate criterion found in an anchor reply, in order (not yet deduplicated)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        items = _items_from_json_value(value)
        if items:
            return [i.strip() for i in items]
    xml = _XML_ITEM.findall(text)
    if xml:
        return [i.strip() for i in xml]
    return [m.group(1).strip().strip('"') for m in _LIST_ITEM.finditer(text)]


# Every byte but [a-z0-9] to a space: for ASCII text, ``_NON_WORD.sub(" ", ...).strip()`` is its
# runs of [a-z0-9] joined by one space, which a byte translation and a split give in C.
_WORD_BYTES = bytes(c if (0x30 <= c <= 0x39 or 0x61 <= c <= 0x7A) else 0x20 for c in range(256))


def _key(text: str) -> str:
    lowered = text.lower()
    if lowered.isascii():
        return " ".join(lowered.encode().translate(_WORD_BYTES).decode().split())
    return _NON_WORD.sub(" ", lowered).strip()


def dedupe_criteria(candidates: list[str], existing: list[str] | None = None) -> list[str]:
    """Drop enumeration prefixes ("3.", "-"), too-short/too-long items and duplicates (case,
    spacing and punctuation ignored)."""
    seen = {_key(c) for c in existing or []}
    kept = []
    for candidate in candidates:
        text = _ENUMERATION.sub("", " ".join(candidate.split()))
        if not (MIN_CRITERION_CHARS <= len(text) <= MAX_CRITERION_CHARS):
            continue
        key = _key(text)
        if key and key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


def rubric_template(ctx: GroupContext) -> str:
    """The rubric prompt's template: ``rubric.user``, or ``rubric_weighted.user`` (importance and pitfalls)."""
    return "rubric_weighted.user" if ctx.options.rubric_prompt == "weighted" else "rubric.user"


def rubric_messages(ctx: GroupContext, reference: Reference) -> list[dict[str, str]]:
    opts, prompts = ctx.options, ctx.prompts
    question = ""
    if opts.include_question:
        question = prompts.render("question.block", question=render_question(ctx.group.prompt)) + "\n\n"
    user = prompts.render(
        rubric_template(ctx),
        question=question,
        reference=reference.text,
        min_criteria=str(opts.min_criteria),
        max_criteria=str(opts.max_criteria),
    )
    return [
        {"role": "system", "content": prompts.render("rubric.system")},
        {"role": "user", "content": user},
    ]


async def _collect(
    ctx: GroupContext,
    messages: list[dict[str, str]],
    criteria: list[str] | None = None,
    max_calls: int | None = None,
    *,
    weighted: bool = False,
) -> tuple[list[Criterion], dict]:
    """Ask the anchor (``messages``) until at least ``min_criteria`` distinct criteria exist,
    starting from ``criteria`` already in hand; at most ``max_calls`` calls (default
    ``rubric_attempts``). The first call samples at the rubric temperature, later ones are fresh
    samples at ``RESAMPLE_TEMPERATURE`` or more. ``weighted``: items carry an importance, and
    pitfalls (up to ``MAX_PITFALLS``) do not count towards the minimum."""
    opts = ctx.options
    criteria = list(criteria or [])
    importance: dict[str, str] = {}  # criterion text -> importance (weighted)
    defaulted = 0
    max_calls = opts.rubric_attempts if max_calls is None else max_calls
    calls = 0
    forced = False

    def positives() -> int:
        return sum(importance.get(c) != "pitfall" for c in criteria)

    while calls < max_calls and positives() < opts.min_criteria:
        calls += 1
        temperature = opts.rubric.temperature if calls == 1 else max(opts.rubric.temperature, RESAMPLE_TEMPERATURE)
        schema = (weighted_rubric_schema if weighted else rubric_schema)(opts.min_criteria, opts.max_criteria)
        result = await ctx.anchor(
            ChatRequest(
                messages=messages,
                stage="rubric",
                max_tokens=opts.rubric.max_tokens,
                temperature=temperature,
                top_p=opts.rubric.top_p,
                seed=None if opts.seed is None else opts.seed + calls - 1,
                json_schema=schema,
                session=ctx.session,  # as ctx.anchor would set it, without a copy of the request
            )
        )
        forced = forced or result.forced
        if not weighted:
            criteria += dedupe_criteria(parse_criteria(result.text), existing=criteria)
            continue
        for text, level in parse_weighted_criteria(result.text):
            kept = dedupe_criteria([text], existing=criteria)
            if not kept:
                continue
            if level is None:
                level, defaulted = DEFAULT_IMPORTANCE, defaulted + 1
            criteria += kept
            importance[kept[0]] = level
    if positives() < opts.min_criteria:
        raise RubricGenerationFailed(
            f"the anchor proposed {positives()} distinct criteria in {calls} rubric call(s); "
            f"at least {opts.min_criteria} are required"
        )
    info: dict = {"attempts": calls, "structured_output": forced}
    if not weighted:
        criteria = criteria[: opts.max_criteria]
        return [_criterion(id=f"c{i + 1}", text=text) for i, text in enumerate(criteria)], info
    kept_positive = [c for c in criteria if importance[c] != "pitfall"][: opts.max_criteria]
    kept_pitfalls = [c for c in criteria if importance[c] == "pitfall"][:MAX_PITFALLS]
    info["importance_defaulted"] = defaulted
    rubric = [
        Criterion(id=f"c{i + 1}", text=text, weight=-1.0 if importance[text] == "pitfall" else 1.0, importance=importance[text])  # type: ignore[arg-type]
        for i, text in enumerate(kept_positive + kept_pitfalls)
    ]
    return rubric, info


async def propose_rubric(ctx: GroupContext, reference: Reference) -> tuple[list[Criterion], dict]:
    """Ask the anchor for criteria until at least ``min_criteria`` distinct ones exist.

    A re-ask is a fresh sample of the same prompt (another seed, temperature at least
    ``RESAMPLE_TEMPERATURE``) whose new criteria are merged in: measured on the small CPU
    anchor, a follow-up turn ("write N more") mostly repeated the first answer, while fresh
    samples added distinct criteria.
    """
    return await _collect(ctx, rubric_messages(ctx, reference), weighted=ctx.options.rubric_prompt == "weighted")


async def propose_discriminating_rubric(
    ctx: GroupContext, reference: Reference, flat: list[Criterion]
) -> tuple[list[Criterion], dict]:
    """A second rubric, asked for once when no criterion of the first separated the rollouts.
    The anchor sees the rollouts here: the point is criteria on which they differ."""
    opts, prompts = ctx.options, ctx.prompts
    responses = "\n\n".join(
        prompts.render("response.item", number=str(i + 1), response=r.strip()) for i, r in enumerate(ctx.group.rollouts)
    )
    user = prompts.render(
        "rubric_discriminating.user",
        reference=reference.text,
        criteria="\n".join(f"- {c.text}" for c in flat),
        responses=responses,
        min_criteria=str(opts.min_criteria),
        max_criteria=str(opts.max_criteria),
    )
    messages = [{"role": "system", "content": prompts.render("rubric.system")}, {"role": "user", "content": user}]
    return await _collect(ctx, messages)
