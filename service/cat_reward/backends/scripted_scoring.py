"""A scripted judge that also has the batched single-token scoring capability
(``engine.ports.YesNoScorer``), for unit tests and offline demos.

``score`` sees one verdict's messages and returns the generated token (``"yes"``, ``"No"``,
``"The"``, ...), a ``(token, p_yes)`` pair, a full ``YesNoScore``, or raises to inject a fault.
Chat calls (the fallback path) still go to the ``ScriptedLLM`` script.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ..engine.ports import ScoringUnavailable, YesNoScore
from .scripted import Script, ScriptedLLM

ScoreScript = Callable[[list[dict[str, str]]], "str | tuple[str, float] | YesNoScore"]


def _render(messages: list[dict[str, str]]) -> str:
    return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"


class ScriptedScoringLLM(ScriptedLLM):
    def __init__(
        self,
        script: Script,
        score: ScoreScript,
        *,
        role: str = "judge",
        model: str = "scripted",
        available: bool = True,
        renderable: bool = True,
    ) -> None:
        super().__init__(script, role=role, model=model)
        self.score = score
        self.available = available
        self.renderable = renderable
        self.batches: list[list[str]] = []  # one entry per score_yes_no call
        self.sessions: list[str | None] = []  # the group key of each score_yes_no call
        self._conversations: dict[str, list[dict[str, str]]] = {}

    async def yes_no_scoring(self) -> bool:
        return self.available

    async def render_prompts(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        if not self.renderable:
            raise ScoringUnavailable("scripted: template not reproducible")
        rendered = []
        for messages in conversations:
            text = _render(messages)
            self._conversations[text] = messages
            rendered.append(text)
        return rendered

    async def score_yes_no(
        self, prompts, *, stage="verdict", temperature=0.0, seed=None, choices=("yes", "no"), session=None
    ) -> list[YesNoScore]:
        self.batches.append(list(prompts))
        self.sessions.append(session)
        batch_id = f"scripted-{len(self.batches)}"
        results = []
        for prompt in prompts:
            reply = self.score(self._conversations[prompt])
            if isinstance(reply, YesNoScore):
                results.append(reply)
                continue
            token, p = reply if isinstance(reply, tuple) else (reply, None)
            top = {}
            if p is not None:
                p = min(max(p, 1e-9), 1 - 1e-9)
                top = {"Yes": math.log(p), "No": math.log(1 - p)}
            top.setdefault(token, -0.1)
            results.append(
                YesNoScore(
                    text=token, top_logprobs=top, model=self.model, prompt_tokens=len(prompt) // 4,
                    completion_tokens=1, batch_id=batch_id,
                )
            )
        return results
