"""Reproduce a server's chat template locally, so a conversation can be sent to ``/v1/completions``
as exactly the prompt text ``/v1/chat/completions`` would have built from it.

vLLM does not publish a model's chat template, but its ``/tokenize`` endpoint applies it
(``messages`` + ``add_generation_prompt``) and ``/detokenize`` turns the tokens back into text.
Rendering a probe conversation whose contents are unique sentinels and cutting the text at the
sentinels gives the template's fixed pieces for that sequence of roles: the text before the
first message, between messages, and the generation prompt after the last. A conversation with
the same roles is then rendered by concatenation, with no round trip.

That holds for templates that insert each message's content verbatim (ChatML, Llama 3, Mistral,
Gemma, ...). It is checked, not assumed: a second probe with awkward content (newlines,
markup, braces, non-ASCII, surrounding spaces) is rendered both ways and must tokenize to the
same token ids as the server's own rendering. A template that trims, escapes or dates its
content fails the check, and the caller falls back to the chat endpoint.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

Roles = tuple[str, ...]

# Content of the verification probe: what real verdict prompts contain, and what templates
# tend to mangle (stripping, escaping, brace handling, unicode normalisation).
CHECK_CONTENT = (
    "  Line one with <b>markup</b> &amp; {{braces}} and \\boxed{42}.\n\n"
    "\tIndented line: caf\u00e9, na\u00efve, \u2248 \u2264 \U0001f600, \"quotes\" 'single'.\n"
    "Last line, then spaces.  "
)


class TemplateMismatch(ValueError):
    """The server's rendering cannot be reproduced by concatenation."""


def sentinels(count: int) -> list[str]:
    token = secrets.token_hex(4)
    return [f"CATSLOT{token}N{i}END" for i in range(count)]


@dataclass(frozen=True)
class TemplateSkeleton:
    """The fixed text around each message of one roles sequence: ``pieces[0] + content[0] +
    pieces[1] + ... + content[-1] + pieces[-1]``."""

    roles: Roles
    pieces: tuple[str, ...]
    strip: bool = False  # the template trims each message's content (Llama 3 does)

    @classmethod
    def from_rendering(cls, roles: Roles, rendered: str, marks: list[str]) -> TemplateSkeleton:
        if len(marks) != len(roles):
            raise ValueError("one sentinel per message is needed")
        pieces = []
        rest = rendered
        for mark in marks:
            if rendered.count(mark) != 1:
                raise TemplateMismatch(f"the template does not copy message content verbatim (sentinel seen {rendered.count(mark)}x)")
            before, rest = rest.split(mark, 1) if mark in rest else (None, rest)
            if before is None:
                raise TemplateMismatch("the template reorders messages")
            pieces.append(before)
        pieces.append(rest)
        return cls(roles=roles, pieces=tuple(pieces))

    def stripping(self) -> TemplateSkeleton:
        return TemplateSkeleton(roles=self.roles, pieces=self.pieces, strip=True)

    def render(self, messages: list[dict[str, str]]) -> str:
        if tuple(m["role"] for m in messages) != self.roles:
            raise ValueError(f"this skeleton renders {self.roles}, not {tuple(m['role'] for m in messages)}")
        parts = [self.pieces[0]]
        for message, piece in zip(messages, self.pieces[1:]):
            parts.append(message["content"].strip() if self.strip else message["content"])
            parts.append(piece)
        return "".join(parts)

    def render_many(self, conversations: list[list[dict[str, str]]]) -> list[str | None]:
        """``render`` of each conversation with this skeleton's roles, None for the others. The
        text up to the last message's content is built once per distinct first message (a
        group's verdicts share their system message): the same strings, fewer steps."""
        if len(self.roles) != 2:
            return [self.render(m) if tuple(x["role"] for x in m) == self.roles else None for m in conversations]
        first_role, last_role = self.roles
        start, middle, end = self.pieces
        strip = self.strip
        heads: dict[str, str] = {}
        rendered: list[str | None] = []
        for messages in conversations:
            if len(messages) != 2 or messages[0]["role"] != first_role or messages[1]["role"] != last_role:
                rendered.append(None)
                continue
            first = messages[0]["content"]
            head = heads.get(first)
            if head is None:
                head = heads[first] = start + (first.strip() if strip else first) + middle
            last = messages[1]["content"]
            rendered.append(head + (last.strip() if strip else last) + end)
        return rendered


def probe_messages(roles: Roles, contents: list[str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in zip(roles, contents)]
