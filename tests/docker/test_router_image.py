"""docker/router.Dockerfile: the judge pool's router image. Linted and checked like the other
images, then its ENTRYPOINT is run as written (vllm-router from the virtual environment) in
front of two simulated judges."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ._support import ROOT, ROUTER_DOCKERFILE, exec_form, image_command, option, stages
from .test_dockerfiles import _hadolint

VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_router_image_lints_clean_and_is_built_like_the_others():
    result = subprocess.run([_hadolint(), "--no-color", str(ROUTER_DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    build, final = stages(ROUTER_DOCKERFILE)[0], stages(ROUTER_DOCKERFILE)[-1]
    for stage in (build, final):
        image, _, tag = stage.base.partition(":")
        assert image == "python" and re.fullmatch(r"3\.11\.\d+-slim(-\w+)?", tag), stage.base
    assert any("--from=build" in i.args and "/opt/venv" in i.args for i in final.all("COPY"))
    assert not [i for i in final.all("COPY") if "--from=" not in i.args], "the router image copies nothing from the repository"
    keywords = [i.keyword for i in final.instructions]
    assert final.all("USER")[-1].args.split(":")[0] not in ("root", "0")
    assert max(i for i, k in enumerate(keywords) if k == "USER") < keywords.index("ENTRYPOINT")
    # the same vllm-router as the test extra, so what the tests run is what the image runs
    installs = " ".join(i.args for i in build.all("RUN"))
    pinned = re.search(r"vllm-router==([\w.]+)", installs).group(1)
    extra = re.search(r'"vllm-router==([\w.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert pinned == extra
    command = image_command(ROUTER_DOCKERFILE)
    assert command[0] == "vllm-router" and option(command, "--host") == "0.0.0.0"
    assert [i.args for i in final.all("EXPOSE")] == [f"{option(command, '--port')} {option(command, '--prometheus-port')}"]
    (healthcheck,) = final.all("HEALTHCHECK")
    probe = exec_form(healthcheck)
    assert probe[:2] == ["python", "-c"] and f"127.0.0.1:{option(command, '--port')}/liveness" in probe[2]
    # a judge that comes back is used again within seconds (docs/router.md: measured)
    assert float(option(command, "--health-check-interval-secs")) <= 2
    assert float(option(command, "--cb-timeout-duration-secs")) <= 5


def _get(url: str, headers: dict | None = None, body: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"content-type": "application/json", **(headers or {})},
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except OSError:
        return 0, b""


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_the_router_image_command_routes_to_the_judges(tmp_path):
    judge_ports = [_free_port(), _free_port()]
    port, metrics = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT / "service"), env.get("PYTHONPATH", "")] if p)
    processes = []
    try:
        for judge_port in judge_ports:
            with open(tmp_path / f"judge-{judge_port}.log", "wb") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "cat_reward.loadtest.simjudge", "--port", str(judge_port), "--time-scale", "0.01"],
                    env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                ))
        command = image_command(ROUTER_DOCKERFILE)
        # as written; then (later flags win) loopback and free ports, and the worker URLs that
        # compose.yaml or Kubernetes append
        argv = [str(VENV_BIN / command[0]), *command[1:], "--host", "127.0.0.1", "--port", str(port),
                "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics),
                "--worker-urls", *[f"http://127.0.0.1:{p}" for p in judge_ports]]
        with open(tmp_path / "router.log", "wb") as log:
            router = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(router)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _get(f"http://127.0.0.1:{port}/v1/models")[0] != 200:
            assert router.poll() is None, (tmp_path / "router.log").read_text()
            time.sleep(0.3)
        assert _get(f"http://127.0.0.1:{port}/v1/models")[0] == 200, (tmp_path / "router.log").read_text()

        (healthcheck,) = stages(ROUTER_DOCKERFILE)[-1].all("HEALTHCHECK")
        probe = exec_form(healthcheck)
        script = probe[2].replace(f"127.0.0.1:{option(command, '--port')}/", f"127.0.0.1:{port}/")
        assert subprocess.run([sys.executable, "-c", script], timeout=30).returncode == 0

        body = {"model": "sim-judge-8b", "prompt": ["Is it? Answer:"], "max_tokens": 1, "logprobs": 0}
        for k in range(16):  # 16 groups, 3 requests each: a group's requests stay on one judge
            for _ in range(3):
                status, _ = _get(f"http://127.0.0.1:{port}/v1/completions", {"X-Session-ID": f"group-{k}"}, body)
                assert status == 200
        counts = [json.loads(_get(f"http://127.0.0.1:{p}/stats")[1])["requests"].get("/v1/completions", 0) for p in judge_ports]
        assert sum(counts) == 48 and all(c % 3 == 0 for c in counts) and min(counts) > 0, counts
        status, text = _get(f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200 and b"vllm_router" in text
    finally:
        for process in reversed(processes):
            _stop(process)
