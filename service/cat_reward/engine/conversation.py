"""Turning a prompt (plain text or chat messages) into text for the anchor and judge."""

from __future__ import annotations


def render_question(prompt: str | list[dict[str, str]]) -> str:
    if isinstance(prompt, str):
        return prompt.strip()
    if len(prompt) == 1:
        return prompt[0]["content"].strip()
    return "\n\n".join(f"[{m['role']}]\n{m['content'].strip()}" for m in prompt)
