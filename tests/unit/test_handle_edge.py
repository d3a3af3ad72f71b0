"""api/handle.py, the Ray Serve handle edge, against the HTTP routes of the same app: the same
answer for the same request, the same 422 naming the field, the same error envelope."""

import json

import httpx
import pytest

from cat_reward.api import create_app
from cat_reward.api.handle import call
from cat_reward.settings import Settings

from .scripts import roles
from .test_api import ExactChecker

pytestmark = pytest.mark.anyio

BODY = {"prompt": "What is 2 + 3?", "rollouts": ["\\boxed{5}", "\\boxed{6}", "five"], "mode": "rubric"}


@pytest.fixture
async def app():
    r, _, _ = roles()
    app = create_app(Settings(auth="open"), roles=r, checker=ExactChecker(), with_history=False)
    async with app.router.lifespan_context(app):
        yield app


async def both(app, path: str, body: dict, key: str | None = None) -> tuple[tuple[int, dict], tuple[int, dict]]:
    headers = {"Idempotency-Key": key} if key else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post(path, json=body, headers=headers)
    status, content = await call(app.state.services, path, json.dumps(body).encode(), key)
    return (response.status_code, response.json()), (status, json.loads(content))


def without_timings(document: dict) -> dict:
    """The answer less what differs between a first call and a second one (timings, cache hits)."""
    details = [
        {**d, "verdicts": [{k: v for k, v in verdict.items() if k != "cached"} for verdict in d["verdicts"]]}
        for d in document["details"]
    ]
    return {**{k: v for k, v in document.items() if k != "usage"}, "details": details}


async def test_same_answer_as_http(app):
    (http_status, over_http), (status, over_handle) = await both(app, "/rewards", BODY, key="k-1")
    assert http_status == status == 200
    assert sorted(over_handle) == sorted(over_http)
    assert without_timings(over_handle) == without_timings(over_http)  # same key, same record id
    assert over_handle["rewards"] == over_http["rewards"] and len(over_handle["rewards"]) == 3


async def test_batch_same_answer_as_http(app):
    batch = {"groups": [BODY, {**BODY, "rollouts": ["\\boxed{5}", "4"]}]}
    (http_status, over_http), (status, over_handle) = await both(app, "/rewards/batch", batch, key="b-1")
    assert http_status == status == 200
    assert [i["ok"] for i in over_handle["results"]] == [i["ok"] for i in over_http["results"]] == [True, True]
    assert [i["result"]["rewards"] for i in over_handle["results"]] == [i["result"]["rewards"] for i in over_http["results"]]


@pytest.mark.parametrize(
    "body, param",
    [({**BODY, "rollouts": []}, "rollouts"), ({**BODY, "options": {"num_criteria": 0}}, "options.num_criteria")],
)
async def test_invalid_request_is_the_same_422(app, body, param):
    (http_status, over_http), (status, over_handle) = await both(app, "/rewards", body)
    assert http_status == status == 422
    assert over_handle == over_http
    assert over_handle["error"]["param"] == param


async def test_unknown_path_and_bad_key(app):
    status, content = await call(app.state.services, "/rubrics", b"{}")
    assert status == 404 and "/rewards/batch" in json.loads(content)["error"]["message"]
    status, content = await call(app.state.services, "/rewards", json.dumps(BODY).encode(), "x" * 201)
    assert status == 422 and json.loads(content)["error"]["param"] == "idempotency_key"
