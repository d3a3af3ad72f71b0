"""The service's audit history through the HTTP API, on SQLite (the embedded default) and on the
real PostgreSQL, with a scripted anchor and judge."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.engine import make_url

from cat_reward.api import create_app
from cat_reward.engine.ports import EquivalenceResult
from cat_reward.settings import Settings
from tests.storage.conftest import fresh_pg_database
from tests.storage.proxy import TcpProxy
from tests.unit.scripts import roles

pytestmark = pytest.mark.anyio


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference.strip() == candidate.strip())


class Service:
    """The app in-process (lifespan entered), reached through httpx.ASGITransport."""

    def __init__(self, settings: Settings):
        r, self.anchor, self.judge = roles()
        self.app = create_app(settings, roles=r, checker=ExactChecker())

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


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.sqlite3'}"
    else:
        async with fresh_pg_database() as url:
            yield url


def body(step=0, run_id="run-1", rollouts=("\\boxed{5}", "\\boxed{6}", "five")):
    return {
        "prompt": "What is 2 + 3?",
        "rollouts": list(rollouts),
        "mode": "rubric",
        "metadata": {"run_id": run_id, "step": step, "group_id": f"g{step}", "tags": {"note": "x"}},
    }


async def test_record_retry_and_audit(database_url, tmp_path):
    service = Service(Settings(database_url=database_url, data_dir=tmp_path / "data"))
    async with service as client:
        first = (await client.post("/rewards", json=body())).json()
        retry = (await client.post("/rewards", json=body())).json()
        assert retry["usage"]["llm_calls"] == 0
        assert retry["record_id"] == first["record_id"] == first["rubric_id"]
        assert retry["rewards"] == first["rewards"]

        record = (await client.get(f"/rubrics/{first['rubric_id']}")).json()
        assert record["request"]["rollouts"] == body()["rollouts"]
        assert record["request"]["metadata"]["tags"] == {"note": "x"}
        assert record["result"]["reference"] == first["reference"]
        assert [c["text"] for c in record["result"]["rubric"]] == [c["text"] for c in first["rubric"]]
        assert all(len(d["verdicts"]) == 5 for d in record["result"]["details"])
        assert (record["anchor_model"], record["judge_model"]) == ("anchor-model", "judge-model")
        assert record["prompt_version"].startswith("cat-v1+")
        assert record["created_at"].endswith("+00:00")

        await service.history.flush()
        page = (await client.get("/rubrics", params={"run_id": "run-1"})).json()
        assert [item["id"] for item in page["items"]] == [first["record_id"]]  # the retry wrote no second record

        other = (await client.post("/rewards", json=body(), headers={"Idempotency-Key": "another-call"})).json()
        assert other["record_id"] != first["record_id"]


async def test_audit_record_says_which_mode_weights_and_prompts_made_the_reward(database_url, tmp_path):
    service = Service(Settings(database_url=database_url, data_dir=tmp_path / "data"))
    rubric = [
        {"criterion": "The response states that the sum is 5.", "points": 1, "importance": "essential"},
        {"criterion": "The response shows the addition 2 + 3.", "importance": "optional"},
        {"criterion": "The response claims that the sum is 6.", "importance": "pitfall"},
    ]
    options = {"aggregation": "weighted", "weights": {"optional": 0.5, "pitfall": 0.25}}
    async with service as client:
        sent = {**body(), "rubric": rubric, "options": options}
        first = (await client.post("/rewards", json=sent)).json()
        record = (await client.get(f"/rubrics/{first['record_id']}")).json()
        scoring = record["result"]["scoring"]
        assert scoring == first["scoring"]
        assert scoring["aggregation"] == "weighted"
        assert scoring["weights"] == {"essential": 1.0, "important": 0.6, "optional": 0.5, "pitfall": 0.25}
        assert scoring["criterion_weights"] == {"s1": 1.0, "s2": 0.5, "s3": -0.25}
        assert scoring["prompts"] == {"set": record["prompt_version"], "rubric": None, "verdict": ["verdict.user"]}
        assert [c["importance"] for c in record["result"]["rubric"]] == ["essential", "optional", "pitfall"]
        assert record["request"]["options"]["weights"]["optional"] == 0.5
        # the scripted judge says yes to everything: (1 + 0.5 - 0.25) / 1.5
        assert first["rewards"] == pytest.approx([1.25 / 1.5] * 3)
        fraction = (await client.post("/rewards", json={**sent, "options": {"aggregation": "fraction"}})).json()
        assert fraction["record_id"] != first["record_id"] and fraction["scoring"]["aggregation"] == "fraction"
        assert fraction["rewards"] == pytest.approx([0.5] * 3)  # ±1 weights: (1 + 1 - 1) / 2


async def test_every_mode_is_recorded_and_listed_newest_first(database_url, tmp_path):
    service = Service(Settings(database_url=database_url, data_dir=tmp_path / "data"))
    async with service as client:
        ids = []
        for step, mode in enumerate(["rubric", "verifiable", "judge", "rubric", "verifiable"]):
            response = await client.post("/rewards", json={**body(step, "run-2"), "mode": mode})
            assert response.status_code == 200, response.text
            ids.append(response.json()["record_id"])
        await service.history.flush()
        seen, cursor = [], None
        while True:
            params = {"run_id": "run-2", "limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/rubrics", params=params)).json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [item["id"] for item in seen] == ids[::-1]
        assert [item["mode"] for item in seen] == ["verifiable", "rubric", "judge", "verifiable", "rubric"]
        assert [item["step"] for item in seen] == [4, 3, 2, 1, 0]
        by_prompt = (await client.get("/rubrics", params={"prompt": "What is 2 + 3?", "limit": 50})).json()
        assert {item["id"] for item in by_prompt["items"]} == set(ids)
        assert (await client.get("/rubrics", params={"prompt": "another prompt"})).json()["items"] == []


async def test_errors(tmp_path):
    service = Service(Settings(data_dir=tmp_path / "data"))
    async with service as client:
        missing = await client.get("/rubrics/rb_nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "not_found" and missing.json()["error"]["param"] == "rubric_id"
        bad_cursor = await client.get("/rubrics", params={"cursor": "!!not-a-cursor"})
        assert bad_cursor.status_code == 422 and bad_cursor.json()["error"]["param"] == "cursor"
        both = await client.get("/rubrics", params={"prompt": "x", "prompt_hash": "0" * 64})
        assert both.status_code == 422 and both.json()["error"]["param"] == "prompt_hash"
        bad_hash = await client.get("/rubrics", params={"prompt_hash": "y"})  # a typo lists nothing silently no more
        assert bad_hash.status_code == 422 and bad_hash.json()["error"]["param"] == "prompt_hash"
        assert (await client.get("/rubrics", params={"prompt_hash": "0" * 64})).json()["items"] == []
        assert (tmp_path / "data" / "history.sqlite3").exists()  # the embedded default


async def test_postgres_unreachable_mid_run_loses_nothing(tmp_path):
    """Rewards keep flowing while PostgreSQL is cut off; every record is there once it returns."""
    async with fresh_pg_database() as url:
        target = make_url(url)
        proxy = TcpProxy(target.host, target.port)
        await proxy.start()
        via_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
        settings = Settings(database_url=via_proxy, data_dir=tmp_path / "data", history_flush_interval_s=0.2)
        service = Service(settings)
        try:
            async with service as client:
                ids = []
                for step in range(3):
                    ids.append((await client.post("/rewards", json=body(step, "outage"))).json()["record_id"])
                await proxy.cut()
                for step in range(3, 9):
                    response = await client.post("/rewards", json=body(step, "outage"))
                    assert response.status_code == 200, response.text
                    assert "history_unavailable" not in response.json()["flags"]
                    ids.append(response.json()["record_id"])
                assert service.history.outbox_depth() >= 6
                listing = await client.get("/rubrics", params={"run_id": "outage"})
                assert listing.status_code == 503 and listing.json()["error"]["type"] == "history_unavailable"
                # A pending record is still readable from the outbox while the database is away.
                assert (await client.get(f"/rubrics/{ids[-1]}")).status_code == 200
                await proxy.restore()
                await service.history.flush()
                assert service.history.outbox_depth() == 0
                page = (await client.get("/rubrics", params={"run_id": "outage", "limit": 100})).json()
                assert sorted(item["id"] for item in page["items"]) == sorted(ids)
        finally:
            await proxy.close()
