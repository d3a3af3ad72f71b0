"""The I/O-free core: request building, idempotency keys, retry decisions, answer parsing."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
import sys
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest

import cat_reward_client
from cat_reward_client import (
    BatchResult,
    InvalidRequestError,
    NotFoundError,
    ResponseDecodeError,
    RetryPolicy,
    RewardGroup,
    RewardResult,
    ServerError,
    UnavailableError,
    UpstreamError,
)
from cat_reward_client._config import make_timeout, parse_retry_after
from cat_reward_client._core import ClientCore, Done, Retry, error_from_response


def core(**kwargs) -> ClientCore:
    return ClientCore(rand=lambda: 0.5, **kwargs)


# --- packaging -------------------------------------------------------------------------


def test_distribution_depends_on_httpx_only():
    requires = importlib.metadata.requires("cat-reward-client") or []
    names = {r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].split("[")[0].strip().lower() for r in requires}
    assert names == {"httpx"}


def test_import_pulls_in_no_server_dependency():
    code = (
        "import sys, cat_reward_client; "
        "bad = [m for m in ('pydantic', 'fastapi', 'starlette', 'cat_reward') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_are_exported_from_the_package():
    for name in cat_reward_client.__all__:
        assert hasattr(cat_reward_client, name), name
    assert cat_reward_client.CatRewardClient.__module__ == "cat_reward_client"
    assert not any(name.startswith("_") and name != "__version__" for name in cat_reward_client.__all__)


# --- request building ------------------------------------------------------------------


def test_rewards_body_omits_unset_fields_and_is_canonical_json():
    spec = core().rewards("What is 6 x 7?", ["42", "41"], options={"seed": 7, "judge_temperature": None})
    assert spec.method == "POST" and spec.path == "/rewards"
    assert json.loads(spec.body) == {"prompt": "What is 6 x 7?", "rollouts": ["42", "41"], "options": {"seed": 7}}
    assert spec.body == b'{"options":{"seed":7},"prompt":"What is 6 x 7?","rollouts":["42","41"]}'
    assert spec.header("content-type") == "application/json"


def test_rewards_body_carries_mode_reference_and_chat_prompt():
    prompt = [{"role": "user", "content": "Hi"}]
    spec = core().rewards(prompt, ("a",), mode="verifiable", reference="42")
    assert json.loads(spec.body) == {"prompt": prompt, "rollouts": ["a"], "mode": "verifiable", "reference": "42"}


def test_default_idempotency_key_is_sha256_of_the_body():
    spec = core().rewards("p", ["a", "b"])
    assert spec.header("Idempotency-Key") == hashlib.sha256(spec.body).hexdigest()


def test_idempotency_key_is_stable_across_calls_and_key_order():
    first = core().rewards("p", ["a"], options={"seed": 1, "num_criteria": 5})
    second = core().rewards("p", ["a"], options={"num_criteria": 5, "seed": 1})
    other = core().rewards("p", ["b"], options={"seed": 1, "num_criteria": 5})
    assert first.header("Idempotency-Key") == second.header("Idempotency-Key")
    assert first.header("Idempotency-Key") != other.header("Idempotency-Key")


def test_caller_idempotency_key_is_used_as_given():
    spec = core().rewards("p", ["a"], idempotency_key="run-7/step-3/group-12")
    assert spec.header("Idempotency-Key") == "run-7/step-3/group-12"
    assert core().rewards("p", ["a"], idempotency_key="k" * 200).header("Idempotency-Key") == "k" * 200


def test_metadata_is_sent_when_given():
    spec = core().rewards("p", ["a"], metadata={"run_id": "r1", "step": 3, "group_id": None})
    assert json.loads(spec.body)["metadata"] == {"run_id": "r1", "step": 3}
    batch = core().rewards_batch([RewardGroup("p", ["a"], metadata={"step": 1}), {"prompt": "q", "rollouts": ["b"]}])
    assert [g.get("metadata") for g in json.loads(batch.body)["groups"]] == [{"step": 1}, None]


def test_rubric_and_token_logprobs_are_sent_when_given():
    spec = core().rewards(
        "p", ["a", "b"], rubric=[{"criterion": "Says 42", "points": 2, "tags": None}], token_logprobs=[[-0.5], [-1, -2]]
    )
    body = json.loads(spec.body)
    assert body["rubric"] == [{"criterion": "Says 42", "points": 2}]
    assert body["token_logprobs"] == [[-0.5], [-1.0, -2.0]]
    assert "rubric" not in json.loads(core().rewards("p", ["a"]).body)
    batch = core().rewards_batch([RewardGroup("p", ["a"], rubric=[{"criterion": "c"}]), {"prompt": "q", "rollouts": ["b"], "token_logprobs": [[-1]]}])
    groups = json.loads(batch.body)["groups"]
    assert groups[0]["rubric"] == [{"criterion": "c"}] and groups[1]["token_logprobs"] == [[-1.0]]
    with pytest.raises(TypeError, match="rubric"):
        core().rewards("p", ["a"], rubric="one criterion")
    with pytest.raises(TypeError, match="rubric\\[0\\]"):
        core().rewards("p", ["a"], rubric=["one criterion"])


@pytest.mark.parametrize("key", ["", "has space", "caf\u00e9", "x" * 201])
def test_bad_idempotency_keys_are_refused(key):
    with pytest.raises(ValueError):
        core().rewards("p", ["a"], idempotency_key=key)


def test_a_single_string_is_not_taken_for_rollouts():
    with pytest.raises(TypeError, match="rollouts"):
        core().rewards("p", "one rollout")
    with pytest.raises(TypeError, match="rollouts\\[1\\]"):
        core().rewards("p", ["a", 3])


def test_nan_is_refused_before_sending():
    with pytest.raises(ValueError):
        core().rewards("p", ["a"], options={"judge_temperature": float("nan")})


def test_batch_accepts_groups_and_mappings():
    spec = core().rewards_batch(
        [RewardGroup("p1", ["a"], mode="judge"), {"prompt": "p2", "rollouts": ["b"], "reference": "r"}]
    )
    assert spec.path == "/rewards/batch"
    assert json.loads(spec.body) == {
        "groups": [
            {"prompt": "p1", "rollouts": ["a"], "mode": "judge"},
            {"prompt": "p2", "rollouts": ["b"], "reference": "r"},
        ]
    }
    assert spec.header("Idempotency-Key") == hashlib.sha256(spec.body).hexdigest()


def test_batch_rejects_unknown_group_fields():
    with pytest.raises(TypeError, match="idempotency_key"):
        core().rewards_batch([{"prompt": "p", "rollouts": ["a"], "idempotency_key": "k"}])


def test_rubric_requests():
    spec = core().get_rubric("rb_1/2")
    assert (spec.method, spec.path) == ("GET", "/rubrics/rb_1%2F2")
    page = core().list_rubrics({"prompt_hash": "abc", "run_id": None, "limit": 10, "cursor": "c1"})
    assert page.params == (("prompt_hash", "abc"), ("limit", "10"), ("cursor", "c1"))
    with pytest.raises(ValueError):
        core().get_rubric("")


# --- retry decisions -------------------------------------------------------------------


def test_retry_policy_never_retries_422():
    with pytest.raises(ValueError, match="422"):
        RetryPolicy(retry_statuses=frozenset({422, 503}))


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=8.0)
    assert [policy.backoff(n, 0.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [policy.backoff(n, 1.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_retry_after_is_honoured_and_capped():
    policy = RetryPolicy(retry_after_max=30.0)
    assert policy.retry_after_delay(5.0, 0.0) == 5.0
    assert 5.0 <= policy.retry_after_delay(5.0, 1.0) <= 5.5
    assert policy.retry_after_delay(3600.0, 0.5) == 30.0


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    date = format_datetime(now + timedelta(seconds=120), usegmt=True)
    assert parse_retry_after(date, now=now.timestamp()) == pytest.approx(120.0)


def test_call_retries_503_then_gives_up_with_the_typed_error():
    c = core(max_retries=1)
    call = c.start(c.healthz())
    envelope = json.dumps({"error": {"type": "llm_unavailable", "message": "down", "retry_after": 5.0}}).encode()
    step = call.on_response(503, {"Retry-After": "5"}, envelope)
    assert isinstance(step, Retry) and 5.0 <= step.delay <= 5.5
    with pytest.raises(UnavailableError) as info:
        call.on_response(503, {"Retry-After": "5"}, envelope)
    assert info.value.attempts == 2 and info.value.retry_after == 5.0


def test_call_never_retries_422():
    c = core(max_retries=5)
    call = c.start(c.rewards("p", ["a"]))
    body = json.dumps({"error": {"type": "invalid_request", "message": "rollouts: too short", "param": "rollouts"}})
    with pytest.raises(InvalidRequestError) as info:
        call.on_response(422, {}, body.encode())
    assert info.value.param == "rollouts" and info.value.attempts == 1


def test_connection_errors_are_retried_but_read_timeouts_are_not_by_default():
    c = core(max_retries=2)
    call = c.start(c.healthz())
    request = httpx.Request("GET", "http://x/healthz")
    assert isinstance(call.on_transport_error(httpx.ConnectError("refused", request=request)), Retry)
    with pytest.raises(cat_reward_client.RequestTimeout):
        call.on_transport_error(httpx.ReadTimeout("slow", request=request))

    patient = core(retry=RetryPolicy(retry_read_timeouts=True))
    call = patient.start(patient.healthz())
    assert isinstance(call.on_transport_error(httpx.ReadTimeout("slow", request=request)), Retry)


def test_readyz_503_body_is_an_answer_not_an_error():
    c = core()
    call = c.start(c.readyz())
    body = json.dumps({"ready": False, "roles": [{"role": "judge", "ok": False}]}).encode()
    step = call.on_response(503, {}, body)
    assert isinstance(step, Done) and step.value.ready is False and step.value.roles[0]["role"] == "judge"


@pytest.mark.parametrize(
    "status, cls",
    [(400, InvalidRequestError), (404, NotFoundError), (422, InvalidRequestError), (429, UnavailableError),
     (500, ServerError), (502, UpstreamError), (503, UnavailableError), (504, ServerError)],
)
def test_status_to_exception(status, cls):
    exc = error_from_response(status, {}, b'{"error": {"type": "t", "message": "m", "param": "p"}}')
    assert type(exc) is cls
    assert (exc.status, exc.type, exc.message, exc.param) == (status, "t", "m", "p")


def test_error_without_envelope_keeps_the_text():
    exc = error_from_response(502, {}, b"<html>Bad gateway</html>")
    assert isinstance(exc, UpstreamError)
    assert "Bad gateway" in exc.message and exc.type == "upstream_error"


def test_header_retry_after_wins_over_body():
    exc = error_from_response(
        503, {"retry-after": "7"}, b'{"error": {"type": "llm_unavailable", "message": "m", "retry_after": 6.2}}'
    )
    assert exc.retry_after == 7.0


# --- parsing ---------------------------------------------------------------------------


def test_reward_result_parsing(reward_body):
    raw = reward_body([1.0, 0.0, None])
    result = RewardResult.from_json(raw)
    assert result.rewards == [1.0, 0.0, None]
    assert result.complete is False
    assert result.rubric_id == "rb_0123456789abcdef01234567"
    assert result.rubric[0].text == "States that the answer is 42."
    assert result.details[2].error == "verdict_failed: c1"
    assert result.details[0].verdicts[0].met is True and result.details[0].verdicts[0].p_yes == 0.9
    assert result.flags == ["incomplete_rewards"]
    assert result.provenance.judge_model == "judge-m"
    assert result.usage.stages["verdict"].calls == 3
    assert result.usage.latency_ms["total"] == 35.5
    assert result.raw == raw
    assert result.record_id is None and result.prompt_hash is None
    with pytest.raises(AttributeError):
        result.rewards = []  # type: ignore[misc]


def test_integer_rewards_become_floats_and_unknown_fields_are_ignored(reward_body):
    raw = reward_body([1, 0])
    raw["something_new"] = {"x": 1}
    raw["record_id"], raw["prompt_hash"] = "rec_1", "ab" * 32
    result = RewardResult.from_json(raw)
    assert result.rewards == [1.0, 0.0] and all(isinstance(r, float) for r in result.rewards)
    assert (result.record_id, result.prompt_hash) == ("rec_1", "ab" * 32)
    assert result.raw["something_new"] == {"x": 1}


def test_batch_result_parsing_and_unwrap(reward_body):
    raw = {
        "results": [
            {"index": 1, "ok": False, "result": None,
             "error": {"type": "rubric_generation_failed", "message": "too few criteria"}},
            {"index": 0, "ok": True, "result": reward_body([1.0]), "error": None},
        ]
    }
    batch = BatchResult.from_json(raw)
    assert [item.index for item in batch] == [0, 1]
    assert batch.ok is False and batch.rewards == [[1.0], None]
    assert batch[0].unwrap().rewards == [1.0]
    with pytest.raises(UpstreamError) as info:
        batch[1].unwrap()
    assert info.value.type == "rubric_generation_failed" and info.value.status == 502
    assert batch.raw == raw


def test_shape_errors_become_decode_errors():
    c = core()
    call = c.start(c.rewards("p", ["a"]))
    with pytest.raises(ResponseDecodeError, match="shape"):
        call.on_response(200, {}, b'{"rewards": [1.0]}')
    call = c.start(c.healthz())
    with pytest.raises(ResponseDecodeError, match="not JSON"):
        call.on_response(200, {}, b"ok")


def test_make_timeout():
    assert make_timeout(None).read is None
    t = make_timeout(30)
    assert (t.connect, t.read, t.write, t.pool) == (10.0, 30.0, 30.0, 30.0)
    assert make_timeout(2).connect == 2.0
    custom = httpx.Timeout(5.0)
    assert make_timeout(custom) is custom


def test_exceptions_survive_pickling():
    # Trainers often run reward calls in worker processes (multiprocessing, Ray) that pickle errors back.
    import pickle

    exc = error_from_response(422, {}, b'{"error": {"type": "invalid_request", "message": "m", "param": "rollouts"}}')
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is InvalidRequestError
    assert (copy.status, copy.type, copy.message, copy.param) == (422, "invalid_request", "m", "rollouts")
