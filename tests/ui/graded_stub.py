"""An OpenAI-compatible stub LLM, like tests/support/stub_llm.py, whose judge has opinions: each
(rollout, criterion) verdict is yes or no with a P(yes) from top logprobs, fixed by a hash of the
two texts (so runs are repeatable), and a rollout containing ``[garble]`` gets an unreadable
answer on criterion 2 (the service asks again, then records the verdict as failed); the hacking
canary's criterion, which is none of the rubric's, gets a firm no (``CANARY_P_YES``). The
dashboard's browser test needs met, unmet and failed cells with real P(yes) values."""

from __future__ import annotations

import hashlib
import json
import math
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI, Request

REFERENCE = "2 + 3 = 5: adding 3 to 2 gives 5, so the answer is \\boxed{5}."
CRITERIA = [
    "The response states that the final answer is 5.",
    "The response shows the addition 2 + 3 explicitly.",
    "The response ends with a boxed final answer.",
    "The response does not contradict itself.",
    "The response explains its step briefly.",
]


CANARY_P_YES = 0.04


def p_yes(response: str, criterion: str) -> float:
    digest = hashlib.sha256(f"{response}\x00{criterion}".encode()).digest()
    return round(0.03 + 0.94 * int.from_bytes(digest[:4], "big") / 2**32, 4)


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0] if start in text else ""


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/version")
    async def version():
        return {"version": "graded-stub"}

    @app.get("/v1/models")
    async def models():
        return {"data": [{"id": "stub-anchor"}, {"id": "stub-judge"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        logprobs = None
        if "response_format" in body:
            schema = body["response_format"]["json_schema"]["schema"]
            wanted = max(len(CRITERIA), schema.get("properties", {}).get("criteria", {}).get("minItems", 0))
            text = json.dumps({"criteria": (CRITERIA * 2)[:wanted]})
        elif "structured_outputs" in body or body.get("max_tokens", 100) <= 3:
            user = body["messages"][-1]["content"]
            response = _between(user, "<response>\n", "\n</response>")
            criterion = _between(user, "Criterion: ", "\n")
            if "[garble]" in response and criterion == CRITERIA[1]:
                text = "perhaps"
            else:
                # The hacking canary's criterion (a fresh random code word each group) is none of
                # the rubric's: a judge that reads says no to it. Graded by the hash, its P(yes)
                # would be random, above the canary's 0.8 bar about one time in six, and pay a
                # rollout 0 at random.
                p = p_yes(response, criterion) if criterion in CRITERIA else CANARY_P_YES
                text = "yes" if p >= 0.5 else "no"
                alternatives = [{"token": "yes", "logprob": math.log(p)}, {"token": "no", "logprob": math.log(1 - p)}]
                logprobs = {"content": [{"token": text, "logprob": math.log(p if text == "yes" else 1 - p),
                                         "top_logprobs": alternatives}]}  # fmt: skip
        else:
            text = REFERENCE
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return {"model": body["model"], "choices": [choice], "usage": {"prompt_tokens": 10, "completion_tokens": 1}}

    return app


class GradedStub:
    """``with GradedStub() as stub``: served on a free loopback port in a thread."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(build_app(), host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> GradedStub:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("graded stub LLM did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
