"""The reads behind the audit dashboard, on SQLite and PostgreSQL: ``list`` filtered by training
step, and ``run_rewards`` (a run's rewards in step order, paged by whole steps)."""

from __future__ import annotations

import pytest

from cat_reward.storage import HistoryStore, StoreUnavailable

from .conftest import make_record

pytestmark = pytest.mark.anyio


async def _put(store: HistoryStore, records: list[dict]) -> None:
    for record in records:
        await store.record(record)
    await store.flush()
    assert store.outbox_depth() == 0


def _rewards(values):
    return {"rewards": list(values), "mode": "rubric", "details": [], "flags": []}


async def test_list_filters_by_step(store):
    records = [
        make_record(0, id="a0", step=0),
        make_record(1, id="a1", step=1),
        make_record(2, id="a1b", step=1),
        make_record(3, id="b1", step=1, run_id="run-2"),
        make_record(4, id="n", step=None),
        make_record(5, id="neg", step=-3),
        make_record(6, id="big", step=2**63 - 1),
    ]
    await _put(store, records)

    page, cursor = await store.list(step=1)
    assert [r["id"] for r in page] == ["b1", "a1b", "a1"] and cursor is None
    page, _ = await store.list(run_id="run-1", step=1)
    assert [r["id"] for r in page] == ["a1b", "a1"]
    page, _ = await store.list(run_id="run-2", step=0)
    assert page == []
    assert [r["id"] for r in (await store.list(step=-3))[0]] == ["neg"]
    assert [r["id"] for r in (await store.list(step=2**63 - 1))[0]] == ["big"]

    # keyset pages within the step filter: nothing missing, nothing twice
    first, cursor = await store.list(step=1, limit=2)
    rest, end = await store.list(step=1, limit=2, cursor=cursor)
    assert [r["id"] for r in first + rest] == ["b1", "a1b", "a1"] and end is None

    # with the prompt filter too
    page, _ = await store.list(prompt_hash="ph-a", run_id="run-1", step=0)
    assert [r["id"] for r in page] == ["a0"]


@pytest.mark.parametrize("step", [True, 1.5, "1", 2**63, -(2**63) - 1])
async def test_list_refuses_a_step_that_is_not_a_64_bit_integer(store, step):
    with pytest.raises(ValueError, match="step"):
        await store.list(step=step)


async def test_run_rewards_in_step_order_without_stepless_or_other_runs(store):
    records = [
        make_record(0, id="s2", step=2, result=_rewards([0.5, None])),
        make_record(1, id="s0", step=0, result=_rewards([0.0, 1.0])),
        make_record(2, id="s1a", step=1, result=_rewards([0.25])),
        make_record(3, id="s1b", step=1, result=_rewards([0.75, 0.5])),
        make_record(4, id="nostep", step=None, result=_rewards([1.0])),
        make_record(5, id="other", step=1, run_id="run-2", result=_rewards([1.0])),
        make_record(6, id="norewards", step=3, result={"mode": "rubric"}),
    ]
    await _put(store, records)

    rows, next_step, truncated = await store.run_rewards("run-1")
    assert next_step is None and truncated is None
    assert [(r["id"], r["step"], r["rewards"]) for r in rows] == [
        ("s0", 0, [0.0, 1.0]),
        ("s1a", 1, [0.25]),  # within a step: oldest first
        ("s1b", 1, [0.75, 0.5]),
        ("s2", 2, [0.5, None]),  # a null reward stays null
        ("norewards", 3, []),  # a result without rewards reads as none, not as an error
    ]
    assert all(r["created_at"].endswith("+00:00") for r in rows)
    assert [r["id"] for r in (await store.run_rewards("run-2"))[0]] == ["other"]
    assert await store.run_rewards("no-such-run") == ([], None, None)

    rows, _, _ = await store.run_rewards("run-1", from_step=2)
    assert [r["id"] for r in rows] == ["s2", "norewards"]


async def test_run_rewards_pages_by_whole_steps(store):
    # steps 0..4 with 1, 3, 2, 1, 2 records: 9 in all
    counts = {0: 1, 1: 3, 2: 2, 3: 1, 4: 2}
    records, n = [], 0
    for step, count in counts.items():
        for i in range(count):
            records.append(make_record(n, id=f"s{step}-{i}", step=step, result=_rewards([step / 10])))
            n += 1
    await _put(store, records)

    seen, pages, from_step = [], [], None
    while True:
        rows, from_step, truncated = await store.run_rewards("run-1", from_step=from_step, limit=3)
        assert truncated is None  # whole steps only: nothing left out
        pages.append(sorted({r["step"] for r in rows}))
        seen += [r["id"] for r in rows]
        if from_step is None:
            break
    # A page never ends inside a step: the step that did not fit starts the next page.
    assert pages == [[0], [1], [2, 3], [4]]
    assert seen == [r["id"] for r in records]

    # One step with more records than the limit: its first `limit` records, then the next step,
    # and it says how many of which step were left out.
    rows, from_step, truncated = await store.run_rewards("run-1", from_step=1, limit=2)
    assert [r["id"] for r in rows] == ["s1-0", "s1-1"] and from_step == 2
    assert truncated == {"step": 1, "returned": 2, "total": 3, "left_out": 1}


async def test_run_rewards_says_how_much_of_an_oversized_step_it_left_out(store):
    # step 0: 1 record; step 5: 7 records; step 6: 1 record; and 2 of step 5 in another run
    records = [make_record(0, id="a", step=0, result=_rewards([0.0]))]
    records += [make_record(1 + i, id=f"big-{i}", step=5, result=_rewards([i / 10])) for i in range(7)]
    records += [make_record(8, id="z", step=6, result=_rewards([1.0]))]
    records += [make_record(9 + i, id=f"other-{i}", step=5, run_id="run-2", result=_rewards([1.0])) for i in range(2)]
    await _put(store, records)

    # Step 0 fits, step 5 does not: the page stops before it (nothing cut, nothing left out).
    rows, next_step, truncated = await store.run_rewards("run-1", limit=4)
    assert [r["id"] for r in rows] == ["a"] and next_step == 5 and truncated is None

    # Step 5 alone holds more than the limit: its oldest 4, and the other 3 are counted (only this run's).
    rows, next_step, truncated = await store.run_rewards("run-1", from_step=5, limit=4)
    assert [r["id"] for r in rows] == ["big-0", "big-1", "big-2", "big-3"]
    assert next_step == 6
    assert truncated == {"step": 5, "returned": 4, "total": 7, "left_out": 3}

    # Exactly the limit: nothing left out.
    rows, next_step, truncated = await store.run_rewards("run-1", from_step=5, limit=7)
    assert len(rows) == 7 and next_step == 6 and truncated is None
    rows, next_step, truncated = await store.run_rewards("run-1", from_step=6, limit=1)
    assert [r["id"] for r in rows] == ["z"] and next_step is None and truncated is None


@pytest.mark.parametrize(("kwargs", "message"), [({"limit": 0}, "limit"), ({"from_step": "3"}, "from_step")])
async def test_run_rewards_argument_checks(store, kwargs, message):
    with pytest.raises(ValueError, match=message):
        await store.run_rewards("run-1", **kwargs)


async def test_reads_raise_store_unavailable_when_the_database_is_down(dead_url, tmp_path):
    store = await HistoryStore.open(dead_url, tmp_path / "outbox.db", flush_interval_s=3600)
    try:
        with pytest.raises(StoreUnavailable):
            await store.list(step=1)
        with pytest.raises(StoreUnavailable):
            await store.run_rewards("run-1")
    finally:
        await store.close()
