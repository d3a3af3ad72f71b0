"""CaT synthesis: the frozen anchor reads the G rollouts (by default without the question)
and writes one reference that reconciles their omissions and contradictions. It may
disagree with the majority."""

from __future__ import annotations

from ..context import GroupContext
from ..conversation import render_question
from ..errors import SynthesisFailed
from ..hacking import anchor_inputs
from ..ports import ChatRequest
from ..types import Reference


def synthesis_messages(ctx: GroupContext) -> list[dict[str, str]]:
    group, prompts = ctx.group, ctx.prompts
    texts, _ = anchor_inputs(ctx)
    item = prompts.pieces("response.item")
    if len(item) == 5 and item[1] == "number" and item[3] == "response":
        # render()'s result for this shape (literal, number, literal, response, literal), without
        # its per-call checks: the G items of every group
        before, between, after = item[0], item[2], item[4]
        responses = "\n\n".join(
            "".join((before, str(i + 1), between, r.strip(), after)) for i, r in enumerate(texts)
        )
    else:
        responses = "\n\n".join(
            prompts.render("response.item", number=str(i + 1), response=r.strip()) for i, r in enumerate(texts)
        )
    question = ""
    if group.options.include_question:
        question = prompts.render("question.block", question=render_question(group.prompt)) + "\n\n"
    template = "synthesis_math.user" if group.mode == "verifiable" else "synthesis_free.user"
    user = prompts.render(template, question=question, count=str(len(texts)), responses=responses)
    return [
        {"role": "system", "content": prompts.render("synthesis.system")},
        {"role": "user", "content": user},
    ]


async def synthesize_reference(ctx: GroupContext) -> Reference:
    sampling = ctx.options.synthesis
    result = await ctx.anchor(
        ChatRequest(
            messages=synthesis_messages(ctx),
            stage="synthesis",
            max_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=ctx.options.seed,
            session=ctx.session,  # as ctx.anchor would set it, without a copy of the request
        )
    )
    text = result.text.strip()
    if not text:
        raise SynthesisFailed("the anchor returned an empty synthesis")
    details = {"finish_reason": result.finish_reason}
    left_out = anchor_inputs(ctx)[1]
    if left_out:
        details["rollouts_left_out"] = left_out  # flagged as injections: the anchor did not read them
    if result.finish_reason == "length":
        details["truncated"] = True
    return Reference(text=text, aggregator="synthesis", details=details)
