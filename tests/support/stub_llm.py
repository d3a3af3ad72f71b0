"""A tiny OpenAI-compatible server answering instantly with canned replies, run in a thread:
for tests that need a real HTTP backend without a model. It records the headers it saw."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI, Request

CRITERIA = [f"The response mentions point {i} of the reference." for i in range(1, 6)]


def build_stub(seen_headers: list[dict], delay_s: float = 0.0) -> FastAPI:
    app = FastAPI()

    @app.get("/version")
    async def version():
        return {"version": "stub"}

    @app.get("/v1/models")
    async def models():
        return {"data": [{"id": "stub-model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        if delay_s:
            await asyncio.sleep(delay_s)
        seen_headers.append(dict(request.headers))
        if "response_format" in body:
            # As many criteria as the schema asks for: the stub never makes the service fail.
            schema = body["response_format"]["json_schema"]["schema"]
            wanted = max(len(CRITERIA), schema.get("properties", {}).get("criteria", {}).get("minItems", 0))
            text = json.dumps({"criteria": [f"The response mentions point {i} of the reference." for i in range(1, wanted + 1)]})
        elif "structured_outputs" in body or body.get("max_tokens", 100) <= 3:
            text = "yes"
        else:
            text = "A reference answer: \\boxed{5}."
        return {
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3},
        }

    return app


class StubServer:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.seen_headers: list[dict] = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(build_stub(self.seen_headers, delay_s), host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> StubServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stub LLM server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


if __name__ == "__main__":  # a stub in a process of its own, for tests that kill it
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    uvicorn.run(build_stub([], args.delay), host="127.0.0.1", port=args.port, log_config=None, access_log=False)
