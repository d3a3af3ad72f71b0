"""A whole cat-reward eval run in process: a JSONL file, a fake policy (httpx.MockTransport), the
service's pipeline with a scripted anchor and judge and the real math-verify pool; and the
command's argument and dependency checks."""

from __future__ import annotations

import argparse
import io
import json

import httpx
import pytest

from cat_reward.backends.math_verify_pool import MathVerifyPool
from cat_reward.evaluation import command, report
from cat_reward.evaluation.runner import EvalOptions, parse_group_sizes, run_eval
from cat_reward.settings import Settings

from .scripts import roles

pytestmark = pytest.mark.anyio

ROLLOUTS = {
    "What is 2 + 3?": ["\\boxed{6}", "\\boxed{6}", "\\boxed{5}", "\\boxed{6}"],  # majority wrong
    "What is 1 + 1?": ["\\boxed{2}"] * 4,  # majority right
}


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
async def checker():
    pool = MathVerifyPool(workers=2, timeout_s=5)
    yield pool
    await pool.close()


def fake_policy(seen: list[dict]):
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "pol"}]})
        body = json.loads(request.content)
        seen.append(body)
        problem = body["messages"][0]["content"].split("\n\n", 1)[0]
        if problem == "FAILME":
            return httpx.Response(500, json={"error": {"message": "policy crashed"}})
        texts = ROLLOUTS[problem][: body["n"]]
        return httpx.Response(200, json={"choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"} for i, t in enumerate(texts)
        ]})

    return httpx.MockTransport(handle)


def anchor(request):
    return "Unified response: \\boxed{5}"  # right for 2 + 3, wrong for 1 + 1


async def test_a_whole_run(tmp_path, checker):
    data = tmp_path / "math.jsonl"
    data.write_text("\n".join(json.dumps({"problem": p, "answer": a, "unique_id": u}) for p, a, u in [
        ("What is 2 + 3?", "5", "u1"), ("FAILME", "1", "u2"), ("What is 1 + 1?", "2", "u3"),
    ]) + "\n")
    seen: list[dict] = []
    progress = io.StringIO()
    r, _, _ = roles(anchor=anchor)
    options = EvalOptions(data=str(data), policy_url="http://policy.test/v1", group_sizes=[4, 1], temperature=0.5,
                          max_tokens=64, seed=11, concurrency=2)
    settings = Settings(anchor_model="anchor-model", llm_max_retries=1)
    results = await run_eval(options, settings, roles=r, checker=checker, policy_transport=fake_policy(seen),
                             progress_file=progress)

    assert results["schema"] == "cat-reward-eval/1" and results["kind"] == "math"
    config = results["config"]
    assert config["group_sizes"] == [1, 4] and config["items"] == 3 and config["items_in_source"] == 3
    assert config["policy"] == {
        "url": "http://policy.test/v1", "model": "pol", "temperature": 0.5, "top_p": None, "max_tokens": 64, "seed": 11,
        "n_per_request": True, "requests": 2, "rollouts_topped_up": 0, "prompt_template": config["policy"]["prompt_template"],
    }
    assert "{problem}" in config["policy"]["prompt_template"]
    assert (config["anchor_model"], config["judge_model"]) == ("anchor-model", "judge-model")
    assert config["prompt_version"].startswith("cat-v1+") and config["elapsed_s"] >= 0
    assert {"include_question", "synthesis", "answer_extractors", "concurrency", "started_at", "cat_reward_version"} <= set(config)
    # the policy was asked for G=4 once per prompt, with the sampling options; the failing one was retried once
    asked = [(b["messages"][0]["content"].split("\n\n")[0], b["n"], b["seed"], b["temperature"], b["max_tokens"]) for b in seen]
    assert sorted(asked) == sorted([("What is 2 + 3?", 4, 11, 0.5, 64), ("What is 1 + 1?", 4, 11, 0.5, 64)]
                                   + [("FAILME", 4, 11, 0.5, 64)] * 2)

    assert [item["id"] for item in results["items"]] == ["u1", "u2", "u3"]  # in input order
    failed = results["items"][1]
    assert failed["policy_error"] == "policy_error: policy http://policy.test/v1/chat/completions: HTTP 500: policy crashed"
    assert failed["rollouts"] == [] and all(g["error"] == failed["policy_error"] for g in failed["groups"])

    summary = results["summary"]
    assert summary["counts"] == {"items": 3, "policy_errors": 1}
    assert summary["single_sample"] == {"accuracy": 5 / 8, "rollouts": 8, "errors": 0, "items": 2}
    for row in summary["by_group_size"]:
        assert (row["n_items"], row["errors"], row["error_reasons"]) == (2, 1, {"policy_error": 1})
        assert (row["majority_accuracy"], row["synthesis_accuracy"]) == (0.5, 0.5)
        assert (row["disagreements"], row["synthesis_right_in_disagreements"], row["majority_right_in_disagreements"]) == (2, 1, 1)
        assert row["synthesis_right_when_disagreeing"] == 0.5
    assert "3/3" in progress.getvalue() and "errors=1" in progress.getvalue()

    paths = report.write_outputs(results, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["summary"] == summary


def args(**overrides) -> argparse.Namespace:
    base = dict(data="builtin:math", format=None, limit=1, policy_url=None, policy_model=None, group_sizes="1,2",
                temperature=0.7, top_p=None, max_tokens=32, seed=None, concurrency=1, out="unused", no_plot=False,
                no_progress=True)
    return argparse.Namespace(**{**base, **overrides})


def test_parse_group_sizes():
    assert parse_group_sizes("8,1, 2,4,2") == [1, 2, 4, 8]
    for bad in ("", "0,1", "a,b", "-1"):
        with pytest.raises(ValueError, match="--group-sizes takes comma-separated positive integers"):
            parse_group_sizes(bad)


def test_command_refuses_to_start_without_matplotlib(monkeypatch, capsys):
    monkeypatch.setattr(report, "plot_available", lambda: False)
    assert command.main(args()) == 2
    assert "the plot needs matplotlib: pip install 'cat-reward[eval]' (or pass --no-plot)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"group_sizes": "1,x"}, "--group-sizes takes comma-separated positive integers"),
        ({"data": "builtin:nope"}, "unknown builtin data 'builtin:nope'"),
        ({"concurrency": 0}, "--concurrency and --max-tokens must be at least 1"),
    ],
)
def test_command_usage_errors(capsys, overrides, message):
    assert command.main(args(**overrides)) == 2
    assert message in capsys.readouterr().err


def test_command_reports_an_unreachable_policy(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CAT_LLM_MAX_RETRIES", "0")
    code = command.main(args(policy_url="http://127.0.0.1:9/v1", no_plot=True, out=str(tmp_path / "o")))
    assert code == 1
    err = capsys.readouterr().err
    assert "cannot use the policy: policy http://127.0.0.1:9/v1/models: ConnectError" in err
    assert not (tmp_path / "o").exists()  # nothing half-written


async def test_the_policy_key_comes_from_settings(tmp_path, checker):
    data = tmp_path / "math.jsonl"
    data.write_text(json.dumps({"problem": "What is 2 + 3?", "answer": "5", "unique_id": "u1"}) + "\n")
    inner = fake_policy([])
    keys = []

    async def handle(request):
        keys.append(request.headers.get("authorization"))
        return await inner.handle_async_request(request)

    r, _, _ = roles(anchor=anchor)
    options = EvalOptions(data=str(data), policy_url="http://policy.test/v1", group_sizes=[1], max_tokens=64)
    settings = Settings(anchor_model="anchor-model", eval_policy_api_key="policy-secret", anchor_api_key="anchor-secret")
    await run_eval(options, settings, roles=r, checker=checker, policy_transport=httpx.MockTransport(handle),
                   progress=False)
    assert keys and set(keys) == {"Bearer policy-secret"}  # its own key, never the anchor's, for a policy URL
