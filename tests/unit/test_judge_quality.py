"""The judge-quality harness: data loading, statistics, and a run with scripted anchor and judges."""

import json

import pytest

from cat_reward.backends.scripted import ScriptedLLM, yes_no_logprobs
from cat_reward.cli import main as cli_main
from cat_reward.engine.ports import ChatResult, Roles
from cat_reward.engine.types import EnsembleMember
from cat_reward.evaluation import judge_quality as jq
from cat_reward.settings import Settings

from .scripts import anchor_script

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


def test_builtin_sets_load_and_are_balanced():
    pairs = jq.load("builtin:pairwise")
    points = jq.load("builtin:pointwise")
    assert pairs.kind == "pairwise" and len(pairs.items) == 24
    assert {i["subset"] for i in pairs.items} == {"math", "facts", "safety", "instructions"}
    assert points.kind == "pointwise" and len(points.items) == 36
    assert sum(i["label"] for i in points.items) == 18
    assert len({i["id"] for i in pairs.items}) == 24


def test_bad_data_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "p", "response": "r", "criterion": "c", "label": true}\n{"prompt": "p", "response": "r", "criterion": "c", "label": "maybe"}\n')
    with pytest.raises(jq.JudgeQualityError, match=r"d.jsonl:2: label must be"):
        jq.load(str(path))
    path.write_text('{"prompt": "p", "answer": "x"}\n')
    with pytest.raises(jq.JudgeQualityError, match="cannot tell the format"):
        jq.load(str(path))
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": ""}\n')
    with pytest.raises(jq.JudgeQualityError, match="d.jsonl:1: 'rejected' must be a non-empty string"):
        jq.load(str(path))
    with pytest.raises(jq.JudgeQualityError, match="no such file"):
        jq.load(str(tmp_path / "missing.jsonl"))


def test_statistics():
    assert jq.auc([(0.9, True), (0.8, True), (0.1, False), (0.8, False)]) == pytest.approx((2 + 1.5) / 4)
    assert jq.auc([(0.9, True)]) is None
    pairs = [(0.95, True)] * 9 + [(0.95, False)] + [(0.05, False)] * 10
    assert jq.ece(pairs) == pytest.approx(0.5 * abs(0.95 - 0.9) + 0.5 * 0.05)
    flags = [True] * 7 + [False] * 3
    ci = jq.bootstrap_ci(flags, jq._accuracy, seed=1)
    assert ci == jq.bootstrap_ci(flags, jq._accuracy, seed=1)  # seeded
    assert ci[0] < 0.7 < ci[1]
    assert jq.bootstrap_ci([], jq._accuracy) is None


def scripted_roles(judge_p_yes):
    """A judge whose P(yes) comes from judge_p_yes(response, criterion)."""

    def judge(request):
        user = request.messages[-1]["content"]
        response = user.split("<response>\n", 1)[1].split("\n</response>", 1)[0]
        criterion = user.rsplit("\n\n", 1)[1].split(": ", 1)[1].split("\n", 1)[0]
        p = judge_p_yes(response, criterion)
        return ChatResult(text="yes" if p >= 0.5 else "no", model="j", prompt_tokens=20, completion_tokens=1,
                          top_logprobs=yes_no_logprobs(p))

    anchor = ScriptedLLM(anchor_script(), role="anchor", model="a")
    return Roles(anchor=anchor, judge=ScriptedLLM(judge, role="judge", model="j"),
                 judges={"b": ScriptedLLM(judge, role="judge", model="j2")})


async def test_run_pairwise_and_pointwise_with_a_scripted_judge(tmp_path):
    pairs = jq.load("builtin:pairwise", limit=8)
    chosen = {i["chosen"] for i in pairs.items}
    points = jq.load("builtin:pointwise")
    labels = {(i["response"], i["criterion"]): i["label"] for i in points.items}

    def p_yes(response, criterion):
        if (response, criterion) in labels:  # pointwise: right, and calibrated at 0.8 / 0.2
            return 0.8 if labels[(response, criterion)] else 0.2
        # pairwise: the chosen response meets every criterion, the rejected one 2 of 5 (soft: 0.4 vs 0.6)
        return 0.9 if response in chosen else (0.6 if "sum is 5" in criterion or "boxed" in criterion else 0.4)

    settings = Settings(cache_enabled=False)
    options = jq.HarnessOptions(aggregations=("fraction", "soft", "all_essential"), ensemble=(EnsembleMember(), EnsembleMember("b", "verdict_p1")))
    report = await jq.run([pairs, points], settings, options, roles=scripted_roles(p_yes), progress=False)
    pw, pt = (s["summary"] for s in report["sections"])
    assert pw["scored"] == 8 and pw["modes"]["fraction"]["accuracy"] == 1.0 and pw["modes"]["soft"]["accuracy"] == 1.0
    assert {i["chosen_index"] for i in report["sections"][0]["items"]} == {0, 1}  # the order is mixed
    assert all("importances" not in i for i in report["sections"][0]["items"])  # a plain rubric
    assert pw["modes"]["all_essential"]["ties"] == 0
    assert pw["cost"]["judge_tokens_per_item"] == 2 * 5 * 2 * 21  # 2 rollouts x 5 criteria x 2 members x 21 tokens
    assert pt["accuracy"] == 1.0 and pt["auc"] == 1.0 and pt["ece"] == pytest.approx(0.2)
    assert pt["said_yes"] == 0.5 and pt["mean_spread"] == 0.0
    assert [m["name"] for m in report["config"]["ensemble"]] == ["judge/verdict", "b/verdict_p1"]
    # each member alone, from its own verdicts on the same rubric
    assert set(pw["members"]) == {"judge/verdict", "b/verdict_p1"}
    assert pw["members"]["b/verdict_p1"]["soft"] == {"accuracy": 1.0, "ci95": [1.0, 1.0], "n": 8, "ties": 0}
    assert pt["members"]["judge/verdict"]["auc"] == 1.0 and pt["members"]["b/verdict_p1"]["n"] == 36
    text = jq.table(report)
    assert "| fraction | 1.000 [1.00, 1.00] | 0 |" in text and "0.200" in text
    jq.plot(report, tmp_path / "q.png")
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(report)  # the report is JSON


async def test_failures_are_counted_not_scored():
    points = jq.load("builtin:pointwise", limit=4)

    def judge(request):
        return ChatResult(text="perhaps", model="j")

    roles = Roles(anchor=ScriptedLLM(anchor_script(), role="anchor", model="a"), judge=ScriptedLLM(judge, role="judge", model="j"))
    report = await jq.run([points], Settings(cache_enabled=False), jq.HarnessOptions(), roles=roles, progress=False)
    summary = report["sections"][0]["summary"]
    assert summary["scored"] == 0 and summary["errors"] == 4 and summary["error_reasons"] == {"verdict_failed": 4}
    assert summary["accuracy"] is None


def test_cli_usage_errors(tmp_path, capsys):
    assert cli_main(["judge-quality", "--data", str(tmp_path / "none.jsonl"), "--json", str(tmp_path / "o.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli_main(["judge-quality", "--data", "builtin:pairwise", "--json", str(tmp_path / "o.json"), "--ensemble", "judge"]) == 2
    assert "JUDGE/PROMPT" in capsys.readouterr().err
    out = tmp_path / "o.json"
    assert cli_main(["judge-quality", "--data", "builtin:pointwise", "--json", str(out), "--ensemble", "nobody/verdict"]) == 2
    assert "unknown judge 'nobody'" in capsys.readouterr().err and not out.exists()


def test_hf_source_reads_a_local_dataset_folder_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    folder = tmp_path / "pairs"
    folder.mkdir()
    rows = [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad", "subset": "s"} for i in range(3)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = jq.load(f"hf:{folder}:test")  # datasets names the split after the file
    assert data.kind == "pairwise" and [i["prompt"] for i in data.items] == ["q0", "q1", "q2"]
    with pytest.raises(jq.JudgeQualityError, match="cannot load"):
        jq.load(f"hf:{tmp_path / 'nothing-here'}")


async def test_weighted_rubric_prompt_records_the_importances():
    pairs = jq.load("builtin:pairwise", limit=2)
    options = jq.HarnessOptions(aggregations=("weighted",), rubric_prompt="weighted")
    report = await jq.run([pairs], Settings(cache_enabled=False), options, roles=scripted_roles(lambda r, c: 0.9), progress=False)
    items = report["sections"][0]["items"]
    # the scripted anchor gives plain strings: each kept as "important" (counted as defaulted)
    assert [i["importances"] for i in items] == [{"important": 5}] * 2
    assert report["config"]["rubric_prompt"] == "weighted"
