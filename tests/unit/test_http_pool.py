"""PooledHTTP: several httpx pools used as one, each request through the least busy."""

import asyncio

import httpx
import pytest

from cat_reward.backends.http_pool import PooledHTTP

pytestmark = pytest.mark.anyio


async def test_requests_spread_over_the_pools_and_connections_are_split():
    seen = []
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        await release.wait()
        return httpx.Response(200, json={"path": request.url.path})

    http = PooledHTTP(4, 64, transport=httpx.MockTransport(handler))
    try:
        assert len(http.clients) == 4
        calls = [asyncio.create_task(http.post("http://x/v1/a", json={"i": i})) for i in range(8)]
        await asyncio.sleep(0.01)
        assert http._in_flight == [2, 2, 2, 2]  # least busy first: an even spread
        release.set()
        responses = await asyncio.gather(*calls)
        assert [r.json()["path"] for r in responses] == ["/v1/a"] * 8
        assert http._in_flight == [0, 0, 0, 0]
        assert (await http.get("http://x/v1/models")).status_code == 200
    finally:
        await http.aclose()


async def test_a_failed_request_gives_its_slot_back():
    def handler(request):
        raise httpx.ConnectError("refused", request=request)

    http = PooledHTTP(2, 4, transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(httpx.ConnectError):
            await http.post("http://x/v1/a", json={})
        assert http._in_flight == [0, 0]
    finally:
        await http.aclose()


def test_pool_sizes():
    http = PooledHTTP(8, 128)
    assert len(http.clients) == 8
    assert all(c._transport._pool._max_connections == 16 for c in http.clients)
    small = PooledHTTP(8, 3)  # never more pools than connections
    assert len(small.clients) == 3
    asyncio.run(http.aclose())
    asyncio.run(small.aclose())


async def test_closing_goes_on_past_a_pool_that_fails_to_close():
    http = PooledHTTP(3, 3)
    closed = []

    def closer(i, fail):
        async def aclose():
            closed.append(i)
            if fail:
                raise RuntimeError("boom")
        return aclose

    originals = [c.aclose for c in http.clients]
    for i, client in enumerate(http.clients):
        client.aclose = closer(i, fail=(i == 0))
    with pytest.raises(RuntimeError, match="boom"):
        await http.aclose()
    assert closed == [0, 1, 2]
    for original in originals:
        await original()

