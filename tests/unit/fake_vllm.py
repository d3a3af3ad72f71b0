"""A fake vLLM OpenAI-compatible server for httpx.MockTransport: GET /version, /tokenize and
/detokenize with a ChatML template over a character "tokenizer" (yes/no spellings are single
tokens), /v1/completions with legacy logprobs, /v1/chat/completions. Every request is recorded."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable

import httpx

WORDS = ["yes", "Yes", " yes", " Yes", "no", "No", " no", " No"]  # "YES", "NO": several tokens here
WORD_ID = {w: 1_000_000 + i for i, w in enumerate(WORDS)}
ID_WORD = {i: w for w, i in WORD_ID.items()}

Decide = Callable[[str], "tuple[str, float]"]  # prompt text -> (generated token, P(that token's class))


def chatml(messages: list[dict], trim: bool = False) -> str:
    body = "".join(
        f"<|im_start|>{m['role']}\n{m['content'].strip() if trim else m['content']}<|im_end|>\n" for m in messages
    )
    return body + "<|im_start|>assistant\n"


def tokenize(text: str) -> list[int]:
    if text in WORD_ID:
        return [WORD_ID[text]]
    return [ord(c) for c in text]


def detokenize(tokens: list[int]) -> str:
    return "".join(ID_WORD.get(t) or chr(t) for t in tokens)


def user_content(prompt: str) -> str:
    return prompt.rsplit("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]


def default_decide(prompt: str) -> tuple[str, float]:
    return ("Yes", 0.8)


class FakeVLLM:
    def __init__(
        self,
        decide: Decide = default_decide,
        *,
        version: bool = True,
        render: Callable[[list[dict]], str] = chatml,
        tokenize_ok: bool = True,
        logprobs: bool = True,
        logprob_token_ids: bool = True,  # False: an older vLLM that ignores the field
        force_choices: bool = True,  # False: a backend that ignores allowed_token_ids
        max_prompt_chars: int | None = None,
        delay_s: float = 0.0,
        chat_text: Callable[[dict], str] | None = None,
    ) -> None:
        self.decide = decide
        self.version = version
        self.render = render
        self.tokenize_ok = tokenize_ok
        self.logprobs = logprobs
        self.logprob_token_ids = logprob_token_ids
        self.force_choices = force_choices
        self.max_prompt_chars = max_prompt_chars
        self.delay_s = delay_s
        self.chat_text = chat_text or (lambda body: "yes")
        self.requests: list[tuple[str, dict | None]] = []
        self.inflight = 0
        self.max_inflight_seen = 0

    def bodies(self, path: str) -> list[dict]:
        return [body for p, body in self.requests if p == path]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.requests.append((path, body))
        if path == "/version":
            return httpx.Response(200, json={"version": "0.32.0"}) if self.version else httpx.Response(404)
        if path == "/tokenize":
            if not self.tokenize_ok:
                return httpx.Response(404, json={"detail": "Not Found"})
            text = self.render(body["messages"]) if "messages" in body else body["prompt"]
            return httpx.Response(200, json={"count": 0, "tokens": tokenize(text)})
        if path == "/detokenize":
            return httpx.Response(200, json={"prompt": detokenize(body["tokens"])})
        if path == "/v1/completions":
            return await self._completions(body)
        if path == "/v1/chat/completions":
            text = self.chat_text(body)
            return httpx.Response(
                200,
                json={
                    "model": body["model"],
                    "choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 1},
                },
            )
        return httpx.Response(404)

    async def _completions(self, body: dict) -> httpx.Response:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        if self.max_prompt_chars is not None and any(len(p) > self.max_prompt_chars for p in prompts):
            return httpx.Response(400, json={"error": {"message": "This model's maximum context length is exceeded"}})
        self.inflight += 1
        self.max_inflight_seen = max(self.max_inflight_seen, self.inflight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.inflight -= 1
        choices = []
        allowed = [ID_WORD[i] for i in body.get("allowed_token_ids") or []]
        for index, prompt in enumerate(prompts):
            token, p = self.decide(prompt)
            cls = token.strip().lower()
            p_yes = p if cls == "yes" else 1 - p if cls == "no" else 0.3
            if allowed and self.force_choices and token not in allowed:
                # Like vLLM's allowed_token_ids: the best allowed token wins.
                wanted = "yes" if p_yes >= 0.5 else "no"
                token = next((w for w in allowed if w.strip().lower() == wanted), allowed[0])
            p_token = p_yes if token.strip().lower() == "yes" else 1 - p_yes
            if body.get("logprob_token_ids") and self.logprob_token_ids:
                asked = [ID_WORD[i] for i in body["logprob_token_ids"]]
                top = {w: math.log(p_yes if w.strip().lower() == "yes" else 1 - p_yes) for w in asked}
                top.setdefault(token, math.log(max(p_token, 1e-6)))
            elif body.get("logprobs") == 0:
                top = {token: math.log(max(p_token, 1e-6))}
            else:
                top = {"Yes": math.log(p_yes), "No": math.log(1 - p_yes), "The": math.log(0.001)}
                top.update({"yes": math.log(p_yes / 2), "no": math.log((1 - p_yes) / 2)})
                top.setdefault(token, math.log(max(p_token, 1e-6)))
            logprobs = {"text_offset": [0], "token_logprobs": [top[token]], "tokens": [token], "top_logprobs": [top]}
            choices.append(
                {"index": index, "text": token, "logprobs": logprobs if self.logprobs else None, "finish_reason": "length"}
            )
        usage = {"prompt_tokens": sum(len(p) for p in prompts), "completion_tokens": len(prompts)}
        # Choices out of order on purpose: the client must sort them by index.
        return httpx.Response(200, json={"model": body["model"], "choices": choices[::-1], "usage": usage})
