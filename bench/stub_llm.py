"""An instant OpenAI-compatible LLM stub, to measure the service's own overhead.

A bare ASGI app (no framework) that answers at once with canned replies, looking enough like
vLLM for the service to use its fast paths: GET /version (so the judge is detected as vLLM),
/tokenize and /detokenize (a ChatML template over a one-character-per-token "tokenizer", with
yes/no spellings as single tokens), /v1/completions (a list of prompts, each answered with an
allowed token and legacy logprobs, as vLLM does), /v1/chat/completions (synthesis text, rubric
JSON with 8 criteria, fused JSON, "yes" verdicts). GET /stats counts requests by path.

    python bench/stub_llm.py --port 8099
"""

from __future__ import annotations

import argparse
import json
import math

CRITERIA = [
    "The response states that Earth's axis is tilted relative to its orbit.",
    "The response gives the tilt as about 23.5 degrees.",
    "The response says the hemisphere tilted toward the Sun gets more direct sunlight.",
    "The response mentions that days are longer in summer than in winter.",
    "The response explains that the seasons are opposite in the two hemispheres.",
    "The response states that the Earth-Sun distance is not the cause of the seasons.",
    "The response does not claim that Earth is closest to the Sun in summer everywhere.",
    "The response is written as one short paragraph.",
]
REFERENCE = (
    "Earth has seasons because its rotation axis is tilted by about 23.5 degrees relative to its orbit. "
    "The hemisphere tilted toward the Sun receives more direct sunlight and longer days, so it has summer "
    "while the other hemisphere has winter; the Earth-Sun distance is not the cause."
)
WORDS = ["yes", "Yes", " yes", " Yes", "no", "No", " no", " No"]
WORD_ID = {w: 1_000_000 + i for i, w in enumerate(WORDS)}
ID_WORD = {i: w for w, i in WORD_ID.items()}
YES_TOP = {"Yes": math.log(0.6), "No": math.log(0.15), "yes": math.log(0.15), "no": math.log(0.05), "The": math.log(0.01)}

stats: dict[str, int] = {}


def chatml(messages: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"


def tokenize(text: str) -> list[int]:
    return [WORD_ID[text]] if text in WORD_ID else [ord(c) for c in text]


def chat_reply(body: dict) -> str:
    system = body["messages"][0]["content"] if body["messages"] else ""
    if "reconcile" in system and "rubric" in system:
        return json.dumps({"reference": REFERENCE, "criteria": CRITERIA})
    if "reconcile" in system:
        return REFERENCE
    if "rubric" in system:
        return json.dumps({"criteria": CRITERIA})
    return "yes"


def first_position(body: dict) -> dict[str, float]:
    """As vLLM answers: the logprob of each token asked by id, or the top-k alternatives."""
    if body.get("logprob_token_ids"):
        top = {ID_WORD.get(i, f"t{i}"): YES_TOP.get(ID_WORD.get(i, ""), -9.5) for i in body["logprob_token_ids"]}
    else:
        k = int(body.get("logprobs") or 0)
        top = dict(list(YES_TOP.items())[:k])
        top.update({f"tok{j}": -6.0 - j / 10 for j in range(max(0, k - len(top)))})
    return top


def completions(body: dict) -> dict:
    prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
    allowed = [ID_WORD.get(i) for i in body.get("allowed_token_ids") or []]
    token = "Yes" if not allowed or "Yes" in allowed else ("yes" if "yes" in allowed else allowed[0])  # as vLLM would
    top = first_position(body)
    top.setdefault(token, YES_TOP.get(token, -0.3))
    choices = [
        {
            "index": i,
            "text": token,
            "logprobs": {"text_offset": [0], "token_logprobs": [top[token]], "tokens": [token], "top_logprobs": [dict(top)]},
            "finish_reason": "length",
            "stop_reason": None,
            "prompt_logprobs": None,
        }
        for i in range(len(prompts))
    ]
    usage = {"prompt_tokens": sum(len(p) for p in prompts) // 4, "completion_tokens": len(prompts)}
    return {"id": "cmpl-stub", "object": "text_completion", "model": body.get("model"), "choices": choices, "usage": usage}


def route(method: str, path: str, body: dict | None) -> tuple[int, object]:
    if method == "GET":
        if path == "/version":
            return 200, {"version": "0.0.0-stub"}
        if path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
        if path == "/stats":
            return 200, stats
        return 404, {"detail": "not found"}
    if path == "/tokenize":
        text = chatml(body["messages"]) if "messages" in body else body["prompt"]
        tokens = tokenize(text)
        return 200, {"count": len(tokens), "max_model_len": 1 << 20, "tokens": tokens}
    if path == "/detokenize":
        return 200, {"prompt": "".join(ID_WORD.get(t) or chr(t) for t in body["tokens"])}
    if path == "/v1/completions":
        return 200, completions(body)
    if path == "/v1/chat/completions":
        text = chat_reply(body)
        return 200, {
            "id": "chat-stub",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": sum(len(m["content"]) for m in body["messages"]) // 4, "completion_tokens": len(text) // 4},
        }
    return 404, {"detail": "not found"}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    raw = b"".join(chunks)
    path = scope["path"]
    stats[path] = stats.get(path, 0) + 1
    status, payload = route(scope["method"], path, json.loads(raw) if raw else None)
    data = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


MODEL = "SmolLM2-135M-Instruct"

if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--model", default=MODEL)
    args = parser.parse_args()
    MODEL = args.model
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
