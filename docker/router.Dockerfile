# syntax=docker/dockerfile:1
# The judge pool's router: vLLM's Rust router (PyPI `vllm-router`, console script `vllm-router`)
# on 0.0.0.0:8000, its own Prometheus metrics on 0.0.0.0:29000. The ONE router image of this
# repository: docker/compose.yaml and the Kubernetes manifests both run it. It copies nothing
# from the repository; the worker URLs are arguments appended at run time:
#
#   docker build -f docker/router.Dockerfile -t cat-reward-router .
#   docker run -p 8000:8000 cat-reward-router --worker-urls http://judge-1:8000 http://judge-2:8000
#
# The flags in ENTRYPOINT are the measured choice (docs/router.md says why each is set):
#   --policy sticky_least_loaded     a group's requests (X-Session-ID, sent by the service) stay
#                                    on one judge; a new group goes to the least loaded one
#   --health-check-interval-secs 2   a judge that comes back is used again within seconds
#   --cb-timeout-duration-secs 5     (the router's defaults, 60 s and 60 s, take about a minute)
#   --worker-startup-timeout-secs 3600  judges may download their model first
# Later flags win: append e.g. `--policy consistent_hash` to override one.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir vllm-router==0.1.17

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 cat \
    && useradd --system --uid 10001 --gid cat --create-home --home-dir /home/cat \
       --shell /usr/sbin/nologin cat
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/cat
EXPOSE 8000 29000
# /liveness: the router process answers (its /health and /readiness speak for the workers).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/liveness', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["vllm-router", "--host", "0.0.0.0", "--port", "8000", "--policy", "sticky_least_loaded", "--prometheus-host", "0.0.0.0", "--prometheus-port", "29000", "--health-check-interval-secs", "2", "--health-check-timeout-secs", "2", "--cb-timeout-duration-secs", "5", "--worker-startup-timeout-secs", "3600", "--worker-startup-check-interval", "5", "--log-level", "warning"]
