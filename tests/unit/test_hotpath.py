"""api.hotpath.GuardedJSONRoute: POST /rewards answered by the short way gives what FastAPI's own
handler gives, request for request (statuses, headers, bodies, rate-limit counts), and the short
way is taken only when the route is shaped as expected."""

import json

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import Response

from cat_reward.api import create_app
from cat_reward.api.deps import get_services
from cat_reward.api.hotpath import GuardedJSONRoute
from cat_reward.api.routes import rewards as rewards_routes
from cat_reward.api.schemas import RewardRequest
from cat_reward.api.security import require
from cat_reward.engine.ports import EquivalenceResult
from cat_reward.settings import Settings

from .scripts import anchor_script, roles

pytestmark = pytest.mark.anyio
BODY = {"prompt": "What is 2 + 3?", "rollouts": ["\\boxed{5}", "\\boxed{6}", "five"], "mode": "rubric"}
TRAINER = {"Authorization": "Bearer trainer"}
JSON = {"content-type": "application/json"}


class ExactChecker:
    async def check(self, reference, candidate):
        return EquivalenceResult(reference.strip() == candidate.strip())


def route_of(app, path="/rewards"):
    return next(r for r in rewards_routes.router.routes if r.path == path)


async def answers(general: bool, requests, **settings):
    """What the app answers to ``requests``; ``general``: with a dependency override in place, which
    sends every request through FastAPI's own handler."""
    r, _, _ = roles(anchor=anchor_script())
    app = create_app(Settings(api_keys="trainer:rewards,auditor:audit", **settings), roles=r, checker=ExactChecker(),
                     with_history=False)
    if general:
        app.dependency_overrides[get_services] = get_services  # any override: FastAPI's handler
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    out = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for method, url, kwargs in requests:
            response = await client.request(method, url, **kwargs)
            body = response.content
            headers = [(k, v) for k, v in response.headers.raw if k != b"x-request-id"]
            if response.status_code == 200 and b"usage" in body:  # timings differ between runs (and so the length)
                headers = [(k, v) for k, v in headers if k != b"content-length"]
                data = response.json()
                data["usage"]["latency_ms"] = sorted(data["usage"]["latency_ms"])
                data["usage"]["stages"] = {k: {**v, "latency_ms": 0} for k, v in data["usage"]["stages"].items()}
                for detail in data["details"]:  # the canary's code word is new for each group
                    if detail.get("canary"):
                        detail["canary"]["criterion"] = "code word"
                body = json.dumps(data).encode()
            if response.status_code == 429:  # the wait depends on the clock's second
                headers = [(k, b"<s>" if k == b"retry-after" else v) for k, v in headers]
                body = body.replace(b'"retry_after":' + str(response.json()["error"]["retry_after"]).encode(), b"")
            out.append((response.status_code, headers, body))
    fast = route_of(app).fast_path
    await lifespan.__aexit__(None, None, None)
    return out, fast


def post(body=None, headers=None, content=None, url="/rewards"):
    kwargs = {"headers": {**JSON, **TRAINER, **(headers or {})}}
    kwargs["content"] = content if content is not None else json.dumps(body if body is not None else BODY).encode()
    return ("POST", url, kwargs)


REQUESTS = [
    post(),
    post(headers={"Idempotency-Key": "key-1"}),
    post(headers={"Idempotency-Key": ""}),
    post(headers={"Idempotency-Key": "k" * 200}),
    post(headers={"Idempotency-Key": "k" * 201}),  # 422 from the header's max_length
    post(content=b"{not json"),
    post(content=b""),
    post(content=b"\xff\xfe"),  # not UTF-8
    post(headers={"content-type": "text/plain"}),
    post(headers={"content-type": "application/json; charset=utf-8"}),
    post(headers={"content-type": "application/merge-patch+json"}),
    ("POST", "/rewards", {"content": json.dumps(BODY).encode(), "headers": TRAINER}),  # no content type
    post({**BODY, "rollouts": []}),
    post({**BODY, "mode": "poetry"}),
    post({**BODY, "surprise": True}),
    post({**BODY, "rollouts": [1, 2]}),
    post({**BODY, "prompt": [{"role": "user"}]}),
    post({**BODY, "options": {"aggregator": "majority"}}),  # the engine's 422
    post({**BODY, "reference": "x", "options": {"aggregator": "synthesis"}}),
    post({**BODY, "mode": "verifiable"}),
    post(headers={"Authorization": ""}),  # no key: 401
    post(content=b"{not json", headers={"Authorization": ""}),  # no key and bad JSON: the guard first
    post({**BODY, "rollouts": []}, headers={"Authorization": "Bearer nope"}),
    post(headers={"Authorization": "Bearer auditor"}),  # 403
    post(headers={"Authorization": "Basic dHJhaW5lcg=="}),
    ("POST", "/rewards?api_key=trainer", {"content": json.dumps(BODY).encode(), "headers": JSON}),
    ("POST", "/rewards?api_key=nope", {"content": json.dumps(BODY).encode(), "headers": JSON}),
    post(content=json.dumps(BODY).encode() + b" "),
]


async def test_the_short_way_answers_as_fastapi_does(monkeypatch):
    import fastapi.routing

    solved = []
    real = fastapi.routing.solve_dependencies

    async def counting(**kwargs):
        solved.append(kwargs["request"].url.path)
        return await real(**kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    fast, on = await answers(False, REQUESTS)
    by_fastapi = len(solved)
    general, _ = await answers(True, REQUESTS)
    assert on
    # With the override FastAPI's handler takes every request (all but those whose body does not
    # parse reach its dependencies); without it, the plain ones never get there.
    by_general = len(solved) - by_fastapi
    assert by_general >= len(REQUESTS) - 4 and by_fastapi <= by_general - 10
    for request, a, b in zip(REQUESTS, fast, general):
        assert a == b, request
    assert {a[0] for a in fast} >= {200, 401, 403, 422}


async def test_rate_limits_count_alike():
    requests = [post(), post({**BODY, "rollouts": []}), post(content=b"{x"), post(), post(), post()]
    fast, _ = await answers(False, requests, rate_limit_per_minute=3)
    general, _ = await answers(True, requests, rate_limit_per_minute=3)
    assert fast == general
    # The guard runs (and counts) for a body that parses but does not validate, not for bad JSON.
    assert [a[0] for a in fast] == [200, 422, 422, 200, 429, 429]


async def test_engine_errors_and_the_batch_route_are_unchanged():
    requests = [post(url="/rewards/batch", body={"groups": [BODY]}), post(url="/rewards/batch", body={"groups": []})]
    fast, _ = await answers(False, requests, max_rollouts=2)
    general, _ = await answers(True, requests, max_rollouts=2)
    assert fast == general


def _app_with(router_dependencies, include_dependencies, endpoint_returns_response=True):
    router = APIRouter(dependencies=router_dependencies)

    if endpoint_returns_response:
        async def endpoint(body: RewardRequest, request: Request, key: str | None = Header(None, alias="X-Key")) -> Response:
            return Response(b"{}", media_type="application/json")
    else:
        async def endpoint(body: RewardRequest, request: Request, key: str | None = Header(None, alias="X-Key")) -> dict:
            return {}

    router.add_api_route("/x", endpoint, methods=["POST"], route_class_override=GuardedJSONRoute)
    app = FastAPI()
    app.include_router(router, dependencies=include_dependencies)
    return app, router.routes[0]


async def _first_request(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        await client.post("/x", content=b"{", headers=JSON)


async def test_the_short_way_is_taken_only_for_its_shape():
    async def other():
        return None

    cases = [
        ([], [Depends(require("rewards"))], True, True),
        ([Depends(require("rewards"))], [], True, True),
        ([], [Depends(require("rewards")), Depends(other)], True, False),  # a dependency it would skip
        ([], [], True, False),  # no guard
        ([], [Depends(require("rewards"))], False, False),  # FastAPI would serialize the answer
    ]
    for router_deps, include_deps, returns_response, expected in cases:
        app, route = _app_with(router_deps, include_deps, returns_response)
        await _first_request(app)
        assert route.fast_path is expected, (router_deps, include_deps, returns_response)


async def test_odd_bodies_are_left_to_fastapi_and_answered_alike():
    deep = b"[" * 100_000 + b"]" * 100_000  # json.loads gives up (RecursionError): FastAPI's 400, our 422
    requests = [post(content=deep), post(content=b"[]"), post(content=b"null"), post(content=b'"x"')]
    fast, _ = await answers(False, requests)
    general, _ = await answers(True, requests)
    assert fast == general
    assert [a[0] for a in fast] == [422, 422, 422, 422]


async def test_a_client_gone_while_sending_the_body_is_answered_alike():
    results = []
    for general in (False, True):
        r, _, _ = roles()
        app = create_app(Settings(api_keys="trainer:rewards"), roles=r, checker=ExactChecker(), with_history=False)
        if general:
            app.dependency_overrides[get_services] = get_services
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        sent = []
        messages = iter([{"type": "http.request", "body": b'{"prompt": ', "more_body": True}, {"type": "http.disconnect"}])

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/rewards", "raw_path": b"/rewards", "query_string": b"",
                 "headers": [(b"authorization", b"Bearer trainer"), (b"content-type", b"application/json"),
                             (b"content-length", b"100")],
                 "root_path": "", "scheme": "http", "server": ("test", 80), "client": ("c", 1), "http_version": "1.1",
                 "asgi": {"version": "3.0"}}
        await app(scope, receive, send)
        await lifespan.__aexit__(None, None, None)
        start = sent[0]
        results.append((start["status"], [(k, v) for k, v in start["headers"] if k != b"x-request-id"], sent[1]["body"]))
    assert results[0] == results[1]
    assert results[0][0] == 422


async def test_what_fastapi_raises_for_a_request_it_takes_over_is_raised_once():
    """An empty body goes to FastAPI's handler, whose 422 is an exception: it must not be taken for
    a failure of the short way and handed over a second time (the guard would count it twice)."""
    requests = [post(content=b""), post(), post()]
    fast, _ = await answers(False, requests, rate_limit_per_minute=2)
    general, _ = await answers(True, requests, rate_limit_per_minute=2)
    assert fast == general
    assert [a[0] for a in fast] == [422, 200, 429]  # one hit each
