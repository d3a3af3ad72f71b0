"""Prompts are versioned data: one folder per prompt set, one file per message.

A prompt set's version is its folder name plus a short hash of its files, so an edited
prompt can never pass for the old one in a cache key or an audit record.

Templates use ``{{name}}`` placeholders (LaTeX braces stay literal). Rendering fails on a
missing or unknown placeholder rather than sending a half-filled prompt.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
DEFAULT_PROMPT_SET = "cat-v1"


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class PromptSet:
    name: str
    version: str
    templates: dict[str, str]

    def render(self, template: str, **values: str) -> str:
        try:
            text = self.templates[template]
        except KeyError:
            raise PromptError(f"prompt set {self.name!r} has no template {template!r}") from None
        pieces, wanted = _compile(text)
        if values.keys() != wanted:
            raise PromptError(
                f"template {template!r}: missing {sorted(wanted - values.keys())}, "
                f"unexpected {sorted(values.keys() - wanted)}"
            )
        # pieces alternate literal text and placeholder names: literal, name, literal, ..., literal
        if len(pieces) == 3:  # one placeholder (a canary's nonce, ...)
            return pieces[0] + values[pieces[1]] + pieces[2]
        parts = list(pieces)
        parts[1::2] = [values[name] for name in pieces[1::2]]
        return "".join(parts)

    def pieces(self, template: str) -> tuple[str, ...]:
        """A template's literal pieces and placeholder names, alternating (literal, name, ...,
        literal): for callers that render one template many times with parts of it shared."""
        try:
            return _compile(self.templates[template])[0]
        except KeyError:
            raise PromptError(f"prompt set {self.name!r} has no template {template!r}") from None


@lru_cache(maxsize=256)
def _compile(text: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """A template split once into its literal pieces and placeholder names (rendering is on the
    hot path: one verdict prompt per rollout and criterion)."""
    pieces = tuple(_PLACEHOLDER.split(text))
    return pieces, frozenset(pieces[1::2])


@lru_cache(maxsize=8)
def load_prompt_set(name: str = DEFAULT_PROMPT_SET) -> PromptSet:
    folder = resources.files(__package__).joinpath(name)
    if not folder.is_dir():
        raise PromptError(f"unknown prompt set {name!r}")
    templates: dict[str, str] = {}
    digest = hashlib.sha256()
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".txt"):
            body = entry.read_text(encoding="utf-8")
            templates[entry.name[: -len(".txt")]] = body.rstrip("\n")
            digest.update(entry.name.encode() + b"\0" + body.encode() + b"\0")
    return PromptSet(name=name, version=f"{name}+{digest.hexdigest()[:8]}", templates=templates)
