"""A verdict ensemble of two judges on two ports: two fake vLLM servers (scripted verdicts,
real HTTP, vLLM's batched /v1/completions scoring) configured as the judge and as an extra
judge (CAT_EXTRA_JUDGES), plus a third one as the anchor."""

from __future__ import annotations

import json
import math
import threading
import time

import httpx
import pytest
import uvicorn

from cat_reward.api import create_app
from cat_reward.engine.ports import EquivalenceResult
from cat_reward.settings import Settings

from ..unit.fake_vllm import FakeVLLM, user_content
from .conftest import free_port

pytestmark = pytest.mark.anyio
CRITERIA = [f"The response mentions point {i} of the reference." for i in range(1, 6)]


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference.strip() == candidate.strip())


def asgi(fake: FakeVLLM, model: str):
    """Serve a FakeVLLM (an httpx handler) as an ASGI app, listing ``model`` at /v1/models."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/v1/models":
            response = httpx.Response(200, json={"object": "list", "data": [{"id": model}]})
        else:
            response = await fake.handle(httpx.Request(scope["method"], f"http://fake{scope['path']}", content=body))
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": response.content})

    return app


class Served:
    def __init__(self, fake: FakeVLLM, model: str) -> None:
        self.fake = fake
        self.port = free_port()
        config = uvicorn.Config(asgi(fake, model), host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "fake vLLM did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def anchor_text(body: dict) -> str:
    if "response_format" in body:
        return json.dumps({"criteria": CRITERIA})
    return "The reference: point 1, point 2 and point 3."


def judge_a(prompt: str):
    return ("Yes", 0.8)


def judge_b(prompt: str):
    # Says no to point 1 with P(yes) 0.2, yes to the rest with 0.6
    return ("No", 0.8) if "point 1 " in user_content(prompt) else ("Yes", 0.6)


async def test_two_judges_on_two_ports_batched_and_averaged():
    a, b = FakeVLLM(judge_a), FakeVLLM(judge_b)
    anchor = FakeVLLM(chat_text=anchor_text)
    with Served(a, "judge-a") as sa, Served(b, "judge-b") as sb, Served(anchor, "m") as sn:
        settings = Settings(
            anchor_base_url=sn.url,
            judge_base_url=sa.url,
            anchor_model="m",
            judge_model="judge-a",
            extra_judges={"b": {"base_url": sb.url, "model": "judge-b"}},
            verdict_batch_wait_ms=0,
            cache_enabled=False,
        )
        app = create_app(settings, checker=ExactChecker(), with_history=False)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=30) as client:
                body = {
                    "prompt": "q",
                    "rollouts": ["first", "second", "third"],
                    "options": {"ensemble": [{"judge": "judge"}, {"judge": "b"}], "aggregation": "soft"},
                }
                response = await client.post("/rewards", json=body)
                ready = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert ready.status_code == 200, ready.text
    extra = [r for r in ready.json()["roles"] if r.get("name") == "b"]
    assert len(extra) == 1 and extra[0]["ok"] and extra[0]["model"] == "judge-b" and extra[0]["required"] is False
    data = response.json()
    # Each judge: one batched /v1/completions request with every verdict of the group; the main
    # judge's also carries the 3 canary verdicts (one per rollout, asked of the judge alone).
    assert [len(x["prompt"]) for x in a.bodies("/v1/completions") if isinstance(x["prompt"], list) and len(x["prompt"]) > 1] == [15 + 3]
    assert [len(x["prompt"]) for x in b.bodies("/v1/completions") if isinstance(x["prompt"], list) and len(x["prompt"]) > 1] == [15]
    assert all(x["model"] == "judge-b" for x in b.bodies("/v1/completions"))
    assert a.bodies("/v1/chat/completions") == [] and b.bodies("/v1/chat/completions") == []
    point1 = data["details"][0]["verdicts"][0]
    assert [m["member"] for m in point1["members"]] == ["judge/verdict", "b/verdict"]
    assert [m["p_yes"] for m in point1["members"]] == pytest.approx([0.8, 0.2])
    assert point1["p_yes"] == pytest.approx(0.5) and point1["spread"] == pytest.approx(0.6)
    expected = (0.5 + 4 * (0.8 + 0.6) / 2) / 5
    assert data["rewards"] == pytest.approx([expected] * 3)
    members = data["scoring"]["ensemble"]["members"]
    assert [(m["judge"], m["model"]) for m in members] == [("judge", "judge-a"), ("b", "judge-b")]
    assert data["scoring"]["ensemble"]["disagreement"]["c1"]["split_rate"] == 1.0
    assert data["scoring"]["ensemble"]["disagreement"]["c2"]["split_rate"] == 0.0
    assert math.isclose(data["scoring"]["ensemble"]["disagreement"]["c2"]["mean_spread"], 0.2, abs_tol=1e-4)
