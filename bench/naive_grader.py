"""A naive rubric grader in the way HealthBench grades (one chat call per (response, rubric
item), the conversation first, then the item, then instructions asking for a short
explanation and a JSON verdict {"explanation", "criteria_met"}), used as the bench baseline.

The wording is ours. Two deliberate differences from HealthBench's grader, both in the naive
grader's favour: the JSON is forced with vLLM's ``response_format`` (a vLLM deployment would do
that), and a reply that does not parse is asked again at most ``attempts`` times (HealthBench
retries without bound).
"""

from __future__ import annotations

import json

from cat_reward.engine.concurrency import gather_bounded
from cat_reward.engine.ports import ChatRequest

TEMPLATE = """You are grading one response against one rubric item.

# Conversation
user: {prompt}

assistant: {response}

# Rubric item
[1] {criterion}

# Instructions
Decide whether the assistant's last response meets the rubric item. First explain your reasoning in one or two sentences, then give your verdict. A rubric item is met only if the response fully satisfies it.
Reply with a JSON object only, in this form:
{{"explanation": "<your reasoning>", "criteria_met": <true or false>}}"""

SCHEMA = {
    "type": "object",
    "properties": {"explanation": {"type": "string"}, "criteria_met": {"type": "boolean"}},
    "required": ["explanation", "criteria_met"],
    "additionalProperties": False,
}


def parse(text: str) -> bool | None:
    start = text.find("{")
    if start == -1:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    met = value.get("criteria_met") if isinstance(value, dict) else None
    return met if isinstance(met, bool) else None


async def grade_one(judge, prompt: str, response: str, criterion: str, *, temperature: float, attempts: int) -> dict:
    messages = [{"role": "user", "content": TEMPLATE.format(prompt=prompt, response=response, criterion=criterion)}]
    calls = 0
    decode = 0
    prompt_tokens = 0
    for attempt in range(attempts):
        result = await judge.chat(
            ChatRequest(
                messages=messages,
                stage="verdict",
                max_tokens=256,
                temperature=temperature if attempt == 0 else max(temperature, 0.7),
                json_schema=SCHEMA,
            )
        )
        calls += 1
        decode += result.completion_tokens
        prompt_tokens += result.prompt_tokens
        met = parse(result.text)
        if met is not None:
            return {"met": met, "calls": calls, "decode_tokens": decode, "prompt_tokens": prompt_tokens}
    return {"met": None, "calls": calls, "decode_tokens": decode, "prompt_tokens": prompt_tokens}


async def grade(judge, prompt: str, rollouts: list[str], criteria: list[str], *, temperature: float = 0.0,
                attempts: int = 1, concurrency: int = 64) -> list[list[dict]]:
    """Every (rollout, criterion) verdict, rollout-major, at most ``concurrency`` calls at once."""
    flat = await gather_bounded(
        [grade_one(judge, prompt, r, c, temperature=temperature, attempts=attempts) for r in rollouts for c in criteria],
        limit=concurrency,
    )
    n = len(criteria)
    return [flat[i * n : (i + 1) * n] for i in range(len(rollouts))]
