"""The app in-process behind httpx's ASGI transport, with a scripted anchor and judge, for the
dashboard's page tests (the browser test runs the real service instead)."""

from __future__ import annotations

import re
from html import unescape

import httpx
import pytest

from cat_reward.api import create_app
from cat_reward.engine.ports import EquivalenceResult
from cat_reward.settings import Settings
from tests.unit.scripts import judge_script, roles

KEYS = "auditkey:audit,trainkey:rewards,adminkey:admin"


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference.strip() == candidate.strip())


def decide(response: str, criterion: str) -> bool:
    """A judge with an opinion: criteria 1, 3 and 5 are met by answers with a 5 in them, 2 and 4
    by everything else; P(yes) is 0.9 for a yes and 0.1 for a no."""
    odd = any(f"{w}" in criterion for w in ("sum is 5", "boxed final", "each step"))
    return ("5" in response) == odd


class App:
    """``async with App(settings) as client``: lifespan entered, httpx client on the app."""

    def __init__(self, settings: Settings, **create_kwargs):
        r, _, _ = roles(judge=judge_script(decide, p=0.9))
        self.app = create_app(settings, roles=r, checker=ExactChecker(), **create_kwargs)

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test")
        return self.client

    async def __aexit__(self, *exc):
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)

    @property
    def history(self):
        return self.app.state.services.history


@pytest.fixture
def settings(tmp_path):
    def make(**overrides) -> Settings:
        values = {"data_dir": tmp_path / "data", "api_keys": KEYS} | overrides
        if values.get("auth") == "open":
            values.pop("api_keys")
        return Settings(**values)

    return make


def group(prompt="What is 2 + 3?", rollouts=("2 + 3 = 5, so \\boxed{5}.", "It is \\boxed{6}.", "five"), *,
          run_id="run-1", step=0, mode="rubric", **extra) -> dict:  # fmt: skip
    return {"prompt": prompt, "rollouts": list(rollouts), "mode": mode,
            "metadata": {"run_id": run_id, "step": step, "group_id": f"g{step}"}, **extra}  # fmt: skip


AUDIT = {"Authorization": "Bearer auditkey"}
TRAIN = {"Authorization": "Bearer trainkey"}


async def post_groups(client: httpx.AsyncClient, bodies: list[dict]) -> list[str]:
    ids = []
    for body in bodies:
        response = await client.post("/rewards", json=body, headers=TRAIN)
        assert response.status_code == 200, response.text
        ids.append(response.json()["record_id"])
    return ids


def text_of(html: str) -> str:
    """The page's text, tags dropped and entities decoded, whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def table(html: str, css_class: str) -> str:
    match = re.search(rf'<table class="{css_class}">(.*?)</table>', html, re.S)
    assert match, f"no table.{css_class} on the page"
    return match.group(1)
