"""cat-reward score / select, in process with a scripted anchor and judge: the rows it reads,
the files it writes, resuming, failures, bad rows, the summary and the selection helpers."""

from __future__ import annotations

import argparse
import asyncio
import json

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cat_reward.api import create_app
from cat_reward.backends.scripted import ScriptedLLM
from cat_reward.engine.errors import LLMUnavailable
from cat_reward.engine.ports import ChatRequest, Roles
from cat_reward.api.rows import ROWS
from cat_reward.offline import command
from cat_reward.offline.command import EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, add_score_arguments
from cat_reward.offline.inputs import BadRow, FieldMap, body_of, group_key, open_source
from cat_reward.offline.runner import run
from cat_reward.offline.scorers import InProcessScorer, UrlScorer
from cat_reward.offline.select import SelectError, select
from cat_reward.offline.store import OutputStore, StoreError, read_lines
from cat_reward.offline.summary import summarize

validate, normalized = ROWS.validate, ROWS.normalized


def score_main(args, **kwargs):
    return command.score_main(args, rows=ROWS, **kwargs)
from cat_reward.settings import Settings

from .scripts import anchor_script, judge_script, response_of


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    for name in ("CAT_DATA_DIR", "CAT_DATABASE_URL", "CAT_REDIS_URL", "CAT_MAX_ROLLOUTS", "CAT_SCORE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CAT_DATA_DIR", str(tmp_path / "data"))


def groups(n: int, start: int = 0) -> list[dict]:
    # Rollouts with "good" get yes on every criterion, the others no: rewards 1.0 and 0.0.
    return [
        {"id": f"g{i}", "prompt": f"What is 2 + {i}?", "rollouts": [f"good {i}", f"bad {i}", f"good again {i}"], "mode": "rubric"}
        for i in range(start, start + n)
    ]


def write_jsonl(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def scripted(judge=None):
    judge = judge or judge_script(lambda response, criterion: response.startswith("good"))
    return Roles(anchor=ScriptedLLM(anchor_script(), role="anchor"), judge=ScriptedLLM(judge, role="judge"))


def args_for(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_score_arguments(parser)
    return parser.parse_args([*argv, "--no-progress"])


def lines(path) -> list[dict]:
    return read_lines(path)


# --- inputs --------------------------------------------------------------------------------------


def test_jsonl_rows_keep_their_line_numbers_and_errors(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [groups(1)[0], "{not json", "", "[1, 2]", groups(1, 1)[0]])
    source = open_source(path)
    assert source.total == 4  # the blank line is no group
    rows = list(source)
    assert [r.number for r in rows] == [1, 2, 4, 5]
    assert rows[0].record["id"] == "g0" and rows[3].record["id"] == "g1"
    assert rows[1].record is None and rows[1].error.startswith("invalid JSON")
    assert rows[2].error == "a line must be a JSON object, not list"


def test_field_mapping_defaults_and_key(tmp_path):
    fields = FieldMap(prompt="question", rollouts="answers", id="uid")
    record = {"uid": 7, "question": "q", "answers": ["a", "b"], "extra": "ignored", "options": {"seed": 3}}
    group_id, body = body_of(record, fields, {"mode": "judge", "options": {"seed": 1, "cache": False}})
    assert group_id == "7"
    assert body == {"prompt": "q", "rollouts": ["a", "b"], "mode": "judge", "options": {"seed": 3, "cache": False}}
    with pytest.raises(BadRow, match="missing field 'answers'"):
        body_of({"question": "q"}, fields)
    # The key: stable across key order, different for another id or another option.
    same = group_key("7", {"rollouts": ["a", "b"], "prompt": "q", "mode": "judge", "options": {"cache": False, "seed": 3}})
    assert group_key(group_id, body) == same
    assert group_key("8", body) != same
    assert group_key(group_id, {**body, "options": {"seed": 4}}) != same


def test_parquet_rows(tmp_path):
    rows = groups(3)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    source = open_source(str(tmp_path / "in.parquet"))
    assert source.total == 3
    assert [(r.number, r.record["id"], r.record["rollouts"]) for r in source] == [
        (i + 1, row["id"], row["rollouts"]) for i, row in enumerate(rows)
    ]


def test_tables_drop_the_nulls_of_absent_keys(tmp_path):
    """In a table a column of objects has every key of every row: the nulls of the keys a row
    does not have are dropped (as absent), so the row validates as its JSONL line would."""
    rows = [
        {"id": "a", "prompt": "p", "rollouts": ["good a", "bad a"], "rubric": [{"criterion": "Is good", "points": 2}],
         "options": {"cache": False}},
        {"id": "b", "prompt": "q", "rollouts": ["good b"], "rubric": [{"criterion": "Is good", "tags": ["t"]}],
         "options": {"seed": 3}},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    records = [row.record for row in open_source(str(tmp_path / "in.parquet"))]
    assert records[0]["rubric"] == [{"criterion": "Is good", "points": 2.0, "tags": None}]  # what pyarrow gives
    bodies = [body_of(record, FieldMap())[1] for record in records]
    assert records[1]["options"] == {"cache": None, "seed": 3}
    assert bodies[0]["rubric"] == [{"criterion": "Is good", "points": 2.0}] and bodies[0]["options"] == {"cache": False}
    assert bodies[1]["rubric"] == [{"criterion": "Is good", "tags": ["t"]}] and bodies[1]["options"] == {"seed": 3}
    as_sent = [{k: v for k, v in row.items() if k != "id"} for row in rows]
    assert [normalized(validate(b)) for b in bodies] == [normalized(validate(b)) for b in as_sent]


def test_hf_source_loads_a_local_dataset_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "my-groups"
    folder.mkdir()
    rows = groups(3)
    rows[1]["rubric"] = [{"criterion": "Is good", "points": 3}]
    write_jsonl(folder / "test.jsonl", rows)
    source = open_source(f"hf:{folder}:test")  # the split is named after the file
    assert source.total == 3
    assert [r.record["id"] for r in source] == ["g0", "g1", "g2"]
    out = tmp_path / "out.jsonl"
    assert score_main(args_for(f"hf:{folder}:test", "-o", str(out), "--no-history"), roles=scripted()) == EXIT_OK
    scored = {e["id"]: e for e in lines(out)}
    assert scored["g1"]["aggregator"] == "none"  # its own rubric, judged: good / bad / good again
    assert scored["g1"]["rewards"] == [1.0, 0.0, 1.0] and scored["g0"]["rewards"] == [1.0, 0.0, 1.0]
    capsys.readouterr()
    assert score_main(args_for(f"hf:{folder}", "-o", str(tmp_path / "x.jsonl")), roles=scripted()) == EXIT_USAGE
    assert 'Unknown split "train"' in capsys.readouterr().err  # the default split, which this folder lacks
    assert score_main(args_for("hf:", "-o", str(tmp_path / "x.jsonl")), roles=scripted()) == EXIT_USAGE


def test_validation_names_the_field():
    with pytest.raises(BadRow, match="rollouts: List should have at least 1 item"):
        validate({"prompt": "p", "rollouts": []})
    with pytest.raises(BadRow, match="options.num_criteria"):
        validate({"prompt": "p", "rollouts": ["a"], "options": {"num_criteria": 0}})


# --- the run, in process -------------------------------------------------------------------------


def test_scores_every_group_once_with_summary_and_json(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", groups(6))
    out = tmp_path / "out.jsonl"
    code = score_main(args_for(data, "-o", str(out), "--json", str(tmp_path / "s.json"), "--concurrency", "3"), roles=scripted())
    assert code == EXIT_OK
    written = lines(out)
    assert sorted(e["id"] for e in written) == [f"g{i}" for i in range(6)]
    assert all(e["rewards"] == [1.0, 0.0, 1.0] for e in written)
    assert all(e["rubric_id"] and e["rubric_id"] == e["record_id"] and e["mode"] == "rubric" for e in written)
    assert all(e["rollouts"][0].startswith("good") and e["line"] == int(e["id"][1:]) + 1 for e in written)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["run"]["scored"] == 6 and summary["failed_groups"] == 0 and summary["bad_rows"] == 0
    assert summary["summary"]["histogram"]["counts"] == [6, 0, 0, 0, 0, 0, 0, 0, 0, 12]
    assert summary["summary"]["zero_variance_share"] == 0.0
    assert summary["run"]["groups_per_s"] > 0
    assert (tmp_path / "out.jsonl.failures.jsonl").read_text() == ""

    # A rerun scores nothing again: every key is in OUT.
    judge = scripted()
    assert score_main(args_for(data, "-o", str(out), "--json", str(tmp_path / "s2.json")), roles=judge) == EXIT_OK
    assert len(lines(out)) == 6 and judge.judge.calls == [] and judge.anchor.calls == []
    again = json.loads((tmp_path / "s2.json").read_text())
    assert again["run"]["already_done"] == 6 and again["run"]["scored"] == 0 and again["summary"]["groups"] == 6


def test_bad_rows_are_reported_by_line_and_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAT_MAX_ROLLOUTS", "3")
    rows = groups(2)
    data = write_jsonl(tmp_path / "in.jsonl", [
        rows[0],
        "{broken",
        {"id": "no-rollouts", "prompt": "p"},
        {"id": "too-many", "prompt": "p", "rollouts": ["a", "b", "c", "d"]},
        {"id": "bad-option", "prompt": "p", "rollouts": ["a"], "options": {"aggregator": "vote"}},
        rows[1],
    ])
    out = tmp_path / "out.jsonl"
    assert score_main(args_for(data, "-o", str(out)), roles=scripted()) == EXIT_INCOMPLETE
    assert sorted(e["id"] for e in lines(out)) == ["g0", "g1"]
    failures = lines(tmp_path / "out.jsonl.failures.jsonl")
    assert [(f["kind"], f["line"]) for f in failures] == [("bad_row", 2), ("bad_row", 3), ("bad_row", 4), ("bad_row", 5)]
    messages = [f["error"]["message"] for f in failures]
    assert messages[0].startswith("invalid JSON")
    assert "missing field 'rollouts'" in messages[1]
    assert messages[2] == "rollouts: 4 rollouts exceed the limit of 3 per group (CAT_MAX_ROLLOUTS)"
    assert messages[3].startswith("options.aggregator:")
    err = capsys.readouterr().err
    assert "line 2: invalid JSON" in err and "line 4: rollouts: 4 rollouts exceed" in err
    assert "0 groups failed and 4 rows were bad" in err

    # A rerun reports them again, once each: the failures file is not a growing log.
    assert score_main(args_for(data, "-o", str(out)), roles=scripted()) == EXIT_INCOMPLETE
    assert [f["line"] for f in lines(tmp_path / "out.jsonl.failures.jsonl")] == [2, 3, 4, 5]

    # --strict stops at the first bad row (the groups before it are kept).
    strict_out = tmp_path / "strict.jsonl"
    assert score_main(args_for(data, "-o", str(strict_out), "--strict"), roles=scripted()) == EXIT_USAGE
    assert [e["id"] for e in lines(strict_out)] == ["g0"]
    assert "--strict: stopped at the bad row on line 2" in capsys.readouterr().err


def test_failed_groups_go_to_the_failures_file_then_retry_failed(tmp_path):
    down = {"on": True}

    def judge(request: ChatRequest):
        if down["on"] and "3" in response_of(request):
            raise LLMUnavailable("judge down for this one", retry_after=0)
        return judge_script(lambda response, criterion: response.startswith("good"))(request)

    data = write_jsonl(tmp_path / "in.jsonl", groups(5))
    out = tmp_path / "out.jsonl"

    async def once(retry_failed: bool):
        store = OutputStore(out).open()
        try:
            async with InProcessScorer(Settings(), rows=ROWS, history=False, roles=scripted(judge)) as scorer:
                stats = await run(open_source(data), store, scorer, retries=2, backoff_s=0, retry_failed=retry_failed, progress=False)
        finally:
            store.close()
        return stats, store

    stats, store = asyncio.run(once(False))
    assert (stats.scored, stats.failed, stats.retries) == (4, 1, 2)
    assert [e["id"] for e in store.still_failed()] == ["g3"]
    (failure,) = lines(tmp_path / "out.jsonl.failures.jsonl")
    assert failure["kind"] == "group" and failure["id"] == "g3" and failure["line"] == 4 and failure["attempts"] == 3
    assert failure["error"]["type"] == "llm_unavailable" and failure["error"]["status"] == 503
    assert "g3" not in {e["id"] for e in lines(out)}  # never a line with 0 rewards

    # Rerun without --retry-failed: skipped, still failed.
    stats, store = asyncio.run(once(False))
    assert (stats.scored, stats.earlier_failures, stats.already_done) == (0, 1, 4)
    assert len(store.still_failed()) == 1
    # With --retry-failed, once the judge is back: scored, and the failures file is empty.
    down["on"] = False
    stats, store = asyncio.run(once(True))
    assert (stats.scored, stats.failed) == (1, 0)
    assert sorted(e["id"] for e in lines(out)) == [f"g{i}" for i in range(5)]
    assert (tmp_path / "out.jsonl.failures.jsonl").read_text() == ""


def test_duplicate_rows_are_scored_once(tmp_path, capsys):
    row = groups(1)[0]
    data = write_jsonl(tmp_path / "in.jsonl", [row, row, {**row, "id": "other"}])
    out = tmp_path / "out.jsonl"
    assert score_main(args_for(data, "-o", str(out)), roles=scripted()) == EXIT_OK
    assert sorted(e["id"] for e in lines(out)) == ["g0", "other"]
    assert "line 2: the same group as an earlier line" in capsys.readouterr().err


# --- the store -----------------------------------------------------------------------------------


def test_store_cuts_a_torn_line_and_refuses_a_second_writer(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"key": "a", "rewards": [1.0]}\n{"key": "b", "rew')
    store = OutputStore(out).open()
    try:
        assert store.done == {"a"}
        assert out.read_text() == '{"key": "a", "rewards": [1.0]}\n'
        with pytest.raises(StoreError, match="another process"):
            OutputStore(out).open()
        store.write_result({"key": "b", "rewards": [0.5]})
        store.write_result({"key": "b", "rewards": [0.7]})  # a second answer for a key: no second line
    finally:
        store.close()
    assert [e["key"] for e in lines(out)] == ["a", "b"]
    (tmp_path / "other.jsonl").write_text("not json\n")
    with pytest.raises(StoreError, match="line 1 is not JSON"):
        OutputStore(tmp_path / "other.jsonl").open()


# --- --url: the same options through the client --------------------------------------------------


def test_url_mode_sends_what_in_process_scores(tmp_path):
    """Rubric and token_logprobs reach the service through the client; both modes give the same
    keys and rewards for the same file."""
    rubric_row = {"id": "r", "prompt": "p", "rollouts": ["good x", "bad y"],
                  "rubric": [{"criterion": "Is good", "points": 2}, {"criterion": "Is polite"}]}
    logprob_row = {"id": "t", "prompt": "What is 2+3?", "rollouts": ["\\boxed{5}", "\\boxed{5}"], "mode": "verifiable",
                   "token_logprobs": [[-0.1, -0.2], [-0.3]]}
    data = write_jsonl(tmp_path / "in.jsonl", [rubric_row, logprob_row, *groups(2)])
    local_out, url_out = tmp_path / "local.jsonl", tmp_path / "url.jsonl"
    assert score_main(args_for(data, "-o", str(local_out), "--no-history"), roles=scripted()) == EXIT_OK

    app = create_app(Settings(), roles=scripted(), with_history=False)
    bodies: list[dict] = []

    class Recording(httpx.AsyncBaseTransport):
        def __init__(self):
            self.inner = httpx.ASGITransport(app=app)

        async def handle_async_request(self, request):
            bodies.append(json.loads(request.content))
            assert request.headers["Idempotency-Key"] and request.headers["Authorization"] == "Bearer sk-test"
            return await self.inner.handle_async_request(request)

    async def served():
        async with app.router.lifespan_context(app):
            return await asyncio.to_thread(
                score_main, args_for(data, "-o", str(url_out), "--url", "http://cat.test"), transport=Recording()
            )

    import os

    os.environ["CAT_SCORE_API_KEY"] = "sk-test"
    try:
        assert asyncio.run(served()) == EXIT_OK
    finally:
        del os.environ["CAT_SCORE_API_KEY"]
    sent = {b.get("rubric") is not None: b for b in bodies if b["prompt"] == "p"}[True]
    assert sent["rubric"] == [{"criterion": "Is good", "points": 2.0}, {"criterion": "Is polite"}]
    assert next(b for b in bodies if "token_logprobs" in b)["token_logprobs"] == [[-0.1, -0.2], [-0.3]]
    local = {e["key"]: e for e in lines(local_out)}
    remote = {e["key"]: e for e in lines(url_out)}
    assert local.keys() == remote.keys() and len(local) == 4
    for key, entry in local.items():
        assert remote[key]["rewards"] == entry["rewards"] and remote[key]["aggregator"] == entry["aggregator"]
    assert local[next(k for k, e in local.items() if e["id"] == "r")]["aggregator"] == "none"  # the supplied rubric was used


def test_url_mode_records_a_refused_group(tmp_path):
    """The service's own limits in --url mode: its 422 is the group's recorded failure."""
    monkey_settings = Settings(max_rollouts=2)
    app = create_app(monkey_settings, roles=scripted(), with_history=False)
    data = write_jsonl(tmp_path / "in.jsonl", groups(1))  # 3 rollouts, over the service's 2

    async def served():
        async with app.router.lifespan_context(app):
            store = OutputStore(tmp_path / "out.jsonl").open()
            try:
                async with UrlScorer("http://cat.test", rows=ROWS, api_key=None, retries=0, transport=httpx.ASGITransport(app=app)) as scorer:
                    return await run(open_source(data), store, scorer, progress=False), store
            finally:
                store.close()

    stats, store = asyncio.run(served())
    assert stats.failed == 1 and stats.scored == 0
    (failure,) = store.still_failed()
    assert failure["error"]["status"] == 422 and failure["error"]["param"] == "rollouts"


# --- summary and selection -----------------------------------------------------------------------


def scored_file(tmp_path):
    entries = [
        {"key": "k1", "id": "a", "prompt": "p1", "rollouts": ["x", "y", "z"], "rewards": [0.2, 0.9, None],
         "errors": [None, None, "verdict_failed: no verdict"], "flags": ["incomplete_rewards"],
         "rollout_flags": [[], ["injection:ignore_instructions"], []], "zero_variance": False, "mode": "rubric"},
        {"key": "k2", "id": "b", "prompt": "p1", "rollouts": ["u", "v"], "rewards": [0.9, 0.5],
         "errors": [None, None], "flags": [], "rollout_flags": [[], []], "zero_variance": False, "mode": "rubric"},
        {"key": "k3", "id": "c", "prompt": [{"role": "user", "content": "hi"}], "rollouts": ["w", "s"], "rewards": [1.0, 1.0],
         "errors": [None, None], "flags": ["zero_variance"], "rollout_flags": [[], []], "zero_variance": True, "mode": "judge"},
    ]
    path = tmp_path / "scored.jsonl"
    write_jsonl(path, entries)
    return path


def test_summary_counts_histogram_and_flags(tmp_path):
    summary = summarize(scored_file(tmp_path))
    assert (summary["groups"], summary["rollouts"], summary["null_rewards"], summary["complete_groups"]) == (3, 7, 1, 2)
    assert summary["histogram"]["counts"] == [0, 0, 1, 0, 0, 1, 0, 0, 0, 4]
    assert summary["zero_variance_share"] == round(1 / 3, 4)
    assert summary["group_flags"] == {"incomplete_rewards": 1, "zero_variance": 1}
    assert summary["rollout_flags"] == {"injection:ignore_instructions": 1}
    assert summary["null_reward_reasons"] == {"verdict_failed": 1}
    assert summary["reward_mean"] == round((0.2 + 0.9 + 0.9 + 0.5 + 2.0) / 6, 4)


def test_select_keep_top_and_min_reward(tmp_path):
    scored = scored_file(tmp_path)
    out = tmp_path / "sft.jsonl"
    counts = select(scored, out, keep_top=2)
    chosen = lines(out)
    # p1 over both of its groups: 0.9 (x's group, first in file order), 0.9 (u); never the null one.
    assert [(c["key"], c["rollout_index"], c["reward"]) for c in chosen[:2]] == [("k1", 1, 0.9), ("k2", 0, 0.9)]
    assert [c["completion"] for c in chosen[:2]] == ["y", "u"]
    assert chosen[2]["completion"] == [{"role": "assistant", "content": "w"}] and chosen[2]["prompt"] == [{"role": "user", "content": "hi"}]
    assert counts["selected"] == 4 and counts["prompts"] == 2 and counts["null_rewards"] == 1

    counts = select(scored, out, min_reward=0.9)
    assert sorted((c["key"], c["rollout_index"]) for c in lines(out)) == [("k1", 1), ("k2", 0), ("k3", 0), ("k3", 1)]
    assert counts["below_min_reward"] == 2
    select(scored, out, keep_top=1, min_reward=0.95)
    assert [(c["key"], c["rollout_index"]) for c in lines(out)] == [("k3", 0)]
    with pytest.raises(SelectError, match="say what to keep"):
        select(scored, out)


def test_normalized_body_drops_defaults():
    request = validate({"prompt": "p", "rollouts": ["a"], "options": {}, "rubric": [{"criterion": "c", "points": 1.0}]})
    assert normalized(request) == {"prompt": "p", "rollouts": ["a"], "rubric": [{"criterion": "c"}]}
