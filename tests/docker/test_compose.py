"""docker/compose.yaml: valid against the Compose Specification, and wired the way the
README says (GPU by default, a one-line CPU variant, replicas behind nginx)."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest

from cat_reward import local_judge
from cat_reward.settings import Settings
from cat_reward.settings_doc import env_var

from ._support import (
    COMPOSE_FILE,
    DOCKER,
    JUDGE_DOCKERFILE,
    NGINX_CONF,
    ROOT,
    ROUTER_DOCKERFILE,
    SERVICE,
    SERVICE_DOCKERFILE,
    default_profiles,
    depends_on,
    enabled_services,
    environment,
    exec_form,
    image_command,
    interpolate,
    load_compose,
    load_compose_raw,
    load_schema,
    nginx_directives,
    nginx_text,
    nginx_upstreams,
    option,
    seconds,
    stages,
)

DEFAULT_MODEL = "Qwen/Qwen3-4B-Instruct-2507"
# The CPU variant documented in the compose header and docker/README.md.
CPU_ENV = {"CAT_API_KEYS": "dev-key:admin", "CAT_ANCHOR_BASE_URL": "http://router-cpu:8000/v1", "CAT_ANCHOR_MODEL": "SmolLM2-135M-Instruct"}
LONG_RUNNING = {"cat-reward", "nginx", "redis", "postgres", "vllm", "judge-cpu", "router", "router-cpu"}
# Each profile's judge pool: the judges, and the router in front of them.
POOLS = {"gpu": ("vllm", "router"), "cpu": ("judge-cpu", "router-cpu")}
SETTINGS_VARS = {env_var(name, info) for name, info in Settings.model_fields.items()}


def _validator():
    schema = load_schema()
    # The file declares draft-07 as "https://json-schema.org/draft-07/schema" (no "#"), which
    # jsonschema does not map to a draft by itself.
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(doc)]


# --- the Compose Specification ---------------------------------------------------------------


def test_the_schema_is_the_compose_specification():
    schema = load_schema()
    assert schema["title"] == "Compose Specification"
    assert {"service", "healthcheck", "deployment", "devices"} <= set(schema["definitions"])


@pytest.mark.parametrize(
    "env",
    [{}, CPU_ENV, {"CAT_MODEL": "Qwen/Qwen3-8B", "CAT_REPLICAS": "4", "HF_TOKEN": "hf_x"}],
    ids=["defaults", "cpu-variant", "overrides"],
)
def test_compose_file_validates_against_the_specification(env):
    assert _errors(load_compose_raw()) == []  # as written, with ${...} in place
    assert _errors(load_compose(env)) == []  # as Compose sees it after interpolation


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["services"]["redis"].update(helthcheck={"test": ["CMD", "true"]}),
        lambda d: d["services"][SERVICE]["depends_on"]["redis"].update(condition="healthy"),
        lambda d: d["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"][0].pop("capabilities"),
        lambda d: d["services"]["postgres"]["healthcheck"].update(retries=[3]),
    ],
    ids=["unknown-key", "bad-condition", "device-without-capabilities", "bad-retries"],
)
def test_the_validation_rejects_broken_files(break_it):
    doc = copy.deepcopy(load_compose())
    break_it(doc)
    assert _errors(doc), "the schema accepted a broken compose file: the validation is not live"


# --- what must hold for the stack to work ----------------------------------------------------


def test_every_long_running_service_has_a_healthcheck():
    services = load_compose()["services"]
    assert set(services) == LONG_RUNNING
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for key in ("interval", "timeout", "start_period"):
            if key in check:
                seconds(check[key])
        assert service.get("restart") == "unless-stopped", name


def test_healthchecks_probe_the_port_each_service_serves():
    services = load_compose()["services"]
    api_port = option(image_command(SERVICE_DOCKERFILE), "--port")
    assert f"127.0.0.1:{api_port}/healthz" in " ".join(services[SERVICE]["healthcheck"]["test"])
    assert services[SERVICE]["expose"] == [api_port]
    vllm_port = option(services["vllm"]["command"], "--port")
    assert f"127.0.0.1:{vllm_port}/health'" in " ".join(services["vllm"]["healthcheck"]["test"])
    judge_port = option(image_command(JUDGE_DOCKERFILE), "--port")
    assert f"127.0.0.1:{judge_port}/health'" in " ".join(services["judge-cpu"]["healthcheck"]["test"])
    assert services["judge-cpu"]["expose"] == [judge_port]
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


def test_vllm_runs_on_a_reserved_gpu_with_prefix_caching():
    vllm = load_compose()["services"]["vllm"]
    image, _, tag = vllm["image"].partition(":")
    assert image == "vllm/vllm-openai" and tag and tag != "latest"
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    gpu = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
    assert gpu, devices
    assert gpu[0]["count"] == "all" or int(gpu[0]["count"]) >= 1
    assert "--enable-prefix-caching" in vllm["command"]
    assert option(vllm["command"], "--model") == DEFAULT_MODEL
    assert option(vllm["command"], "--host") == "0.0.0.0"
    env = environment(vllm)
    assert "HF_TOKEN" in env
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in vllm["volumes"]}
    assert env["HF_HOME"] in mounts, "the Hugging Face cache must be on a volume"
    assert mounts[env["HF_HOME"]] in load_compose()["volumes"]
    assert seconds(vllm["healthcheck"]["start_period"]) >= 600, "model downloads need a long start period"


def test_the_service_points_at_redis_postgres_and_vllm():
    doc = load_compose()
    service = doc["services"][SERVICE]
    env = environment(service)
    redis, postgres = urlsplit(env["CAT_REDIS_URL"]), urlsplit(env["CAT_DATABASE_URL"])
    assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
    assert (postgres.scheme, postgres.hostname, postgres.port) == ("postgresql", "postgres", 5432)
    pg_env = environment(doc["services"]["postgres"])
    assert (postgres.username, postgres.password, postgres.path) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
        "/" + pg_env["POSTGRES_DB"],
    )
    anchor = urlsplit(env["CAT_ANCHOR_BASE_URL"])
    vllm_command = doc["services"]["vllm"]["command"]
    router_port = option(image_command(ROUTER_DOCKERFILE), "--port")
    assert (anchor.hostname, str(anchor.port), anchor.path) == ("router", router_port, "/v1")
    assert env["CAT_ANCHOR_MODEL"] == option(vllm_command, "--model") == DEFAULT_MODEL
    assert env["CAT_DATA_DIR"] == "/data"
    assert any(volume.endswith(":/data") for volume in service["volumes"])


def test_cat_model_sets_both_the_served_and_the_requested_model():
    doc = load_compose({"CAT_MODEL": "Qwen/Qwen3-8B"})
    assert option(doc["services"]["vllm"]["command"], "--model") == "Qwen/Qwen3-8B"
    assert environment(doc["services"][SERVICE])["CAT_ANCHOR_MODEL"] == "Qwen/Qwen3-8B"


def test_the_service_environment_is_valid_settings(monkeypatch):
    env = environment(load_compose()["services"][SERVICE])
    unknown = {key for key in env if key.startswith("CAT_")} - SETTINGS_VARS
    assert not unknown, f"not settings of cat_reward.settings.Settings: {unknown}"
    for key in [k for k in os.environ if k.startswith("CAT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.anchor_base_url == ["http://router:8000/v1"]
    assert settings.judge_urls == settings.anchor_base_url  # the judges are the same pool
    assert settings.redis_url == env["CAT_REDIS_URL"]
    assert settings.history_url == env["CAT_DATABASE_URL"]
    assert settings.data_dir == Path("/data")


def test_the_service_behind_nginx_trusts_its_forwarded_headers(monkeypatch):
    """nginx says the scheme (X-Forwarded-Proto) the browser used; the replicas must believe it,
    or the dashboard's cookie is never Secure behind an https nginx."""
    doc = load_compose()
    env = environment(doc["services"][SERVICE])
    for key in [k for k in os.environ if k.startswith("CAT_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.forwarded_allow_ips == "*"  # safe only because no replica publishes a port:
    assert "ports" not in doc["services"][SERVICE]  # every peer is a container of this stack
    assert settings.ui_session_secret is None  # unset by default: derived from the keys, the same on every replica
    assert settings.ui_cookie_secure is None  # from the scheme nginx forwards
    headers = {d[0].lower(): d[1] for d in nginx_directives(nginx_text(), "proxy_set_header")}
    assert headers["x-forwarded-proto"] == "$scheme" and headers["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    shared = load_compose({"CAT_UI_SESSION_SECRET": "s3cret"})
    assert environment(shared["services"][SERVICE])["CAT_UI_SESSION_SECRET"] == "s3cret"


def test_depends_on_waits_for_healthy_backends():
    services = load_compose()["services"]
    deps = depends_on(services[SERVICE])
    assert deps["redis"] == {"condition": "service_healthy", "required": True}
    assert deps["postgres"] == {"condition": "service_healthy", "required": True}
    # Each judge pool lives in its own profile: wait for whichever router runs, tolerate the other.
    assert deps["router"] == {"condition": "service_healthy", "required": False}
    assert deps["router-cpu"] == {"condition": "service_healthy", "required": False}
    assert depends_on(services["router"]) == {"vllm": {"condition": "service_healthy", "required": True}}
    assert depends_on(services["router-cpu"]) == {"judge-cpu": {"condition": "service_healthy", "required": True}}
    assert depends_on(services["nginx"]) == {SERVICE: {"condition": "service_healthy", "required": True}}
    for name, service in services.items():
        for dep, cfg in depends_on(service).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cfg["condition"] == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}, which has no healthcheck"


@pytest.mark.parametrize(
    ("profiles", "pool", "absent"),
    [(None, POOLS["gpu"], POOLS["cpu"]), ({"cpu"}, POOLS["cpu"], POOLS["gpu"])],
    ids=["plain-up-is-gpu", "profile-cpu"],
)
def test_profiles_pick_exactly_one_judge_pool(profiles, pool, absent):
    """A plain `up` uses COMPOSE_PROFILES from docker/.env (gpu); `--profile cpu` replaces it."""
    doc = load_compose(CPU_ENV if profiles else {})
    active = default_profiles() if profiles is None else profiles
    enabled = enabled_services(doc, active)
    assert enabled == {"redis", "postgres", SERVICE, "nginx", *pool}
    assert not set(absent) & enabled
    # What compose-go checks when it loads the project: a dependency on a disabled service is
    # only allowed when it is `required: false`.
    for name in enabled:
        for dep, cfg in depends_on(doc["services"][name]).items():
            assert dep in enabled or cfg["required"] is False, f"{name} needs disabled {dep}"
    anchor = urlsplit(environment(doc["services"][SERVICE])["CAT_ANCHOR_BASE_URL"])
    assert anchor.hostname == pool[1], "the service talks to the pool's router"


def test_default_profile_is_gpu_and_only_the_pools_have_profiles():
    assert default_profiles() == {"gpu"}
    services = load_compose_raw()["services"]
    for profile, names in POOLS.items():
        for name in names:
            assert services[name]["profiles"] == [profile]
    pooled = {name for names in POOLS.values() for name in names}
    assert all("profiles" not in s for n, s in services.items() if n not in pooled)
    # docker/.env must be committed although the root .gitignore ignores every .env.
    assert "!.env" in (DOCKER / ".gitignore").read_text().split()


def test_the_cpu_variant_points_at_the_cpu_judge():
    doc = load_compose(CPU_ENV)
    judge = doc["services"]["judge-cpu"]
    assert judge["build"]["dockerfile"] == "docker/judge-cpu.Dockerfile"
    env = environment(doc["services"][SERVICE])
    anchor = urlsplit(env["CAT_ANCHOR_BASE_URL"])
    assert (anchor.hostname, str(anchor.port)) == ("router-cpu", option(image_command(ROUTER_DOCKERFILE), "--port"))
    assert env["CAT_ANCHOR_MODEL"] == local_judge.SERVED_MODEL
    # The documented one-liner is in the header of the compose file and in docker/README.md.
    one_liner = " ".join(f"{k}={v}" for k, v in CPU_ENV.items()) + " docker compose -f docker/compose.yaml --profile cpu up"
    assert one_liner in COMPOSE_FILE.read_text()
    assert one_liner in (DOCKER / "README.md").read_text()


def test_replicas_share_redis_postgres_and_sit_behind_nginx():
    services = load_compose()["services"]
    service = services[SERVICE]
    assert int(service["deploy"]["replicas"]) == 2
    assert int(load_compose({"CAT_REPLICAS": "5"})["services"][SERVICE]["deploy"]["replicas"]) == 5
    # Replicas cannot share a host port or a container name: only nginx publishes one.
    assert "ports" not in service and "container_name" not in service
    published = [p for name, s in services.items() for p in s.get("ports", [])]
    assert published == ["8000:8000"], published
    nginx = services["nginx"]
    image, _, tag = nginx["image"].partition(":")
    version = tuple(int(part) for part in re.match(r"(\d+)\.(\d+)", tag).groups())
    assert image == "nginx" and version >= (1, 28), "upstream `resolve` needs nginx >= 1.27.3"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in nginx["volumes"]}
    assert (DOCKER / mounts["/etc/nginx/conf.d/default.conf"]).resolve() == NGINX_CONF


def test_nginx_upstream_names_the_service():
    text = nginx_text()
    upstreams = nginx_upstreams(text)
    assert len(upstreams) == 1, upstreams
    (name, servers), = upstreams.items()
    api_port = option(image_command(SERVICE_DOCKERFILE), "--port")
    assert servers == [[f"{SERVICE}:{api_port}", "resolve"]]
    assert nginx_directives(text, "proxy_pass") == [[f"http://{name}"]]
    assert nginx_directives(text, "listen") == [["8000"]]
    assert nginx_directives(text, "resolver")[0][0] == "127.0.0.11"  # Docker's embedded DNS
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        (value,), = nginx_directives(text, directive)
        assert seconds(value) >= 600, f"{directive} {value}: reward calls take minutes"


def test_images_are_pinned_and_builds_use_the_dockerfiles():
    services = load_compose()["services"]
    for name, service in services.items():
        image, _, tag = service["image"].partition(":")
        assert tag and tag != "latest", f"{name}: {service['image']}"
        if "build" in service:
            assert (COMPOSE_FILE.parent / service["build"]["context"]).resolve() == ROOT
            assert (ROOT / service["build"]["dockerfile"]).is_file()
    assert services[SERVICE]["build"]["dockerfile"] == "docker/Dockerfile"


def test_dockerfile_healthchecks_match_the_compose_healthchecks():
    """The compose healthchecks repeat the images' own, so they must not drift apart."""
    services = load_compose()["services"]
    for name, dockerfile in ((SERVICE, SERVICE_DOCKERFILE), ("judge-cpu", JUDGE_DOCKERFILE),
                             ("router", ROUTER_DOCKERFILE), ("router-cpu", ROUTER_DOCKERFILE)):
        (healthcheck,) = stages(dockerfile)[-1].all("HEALTHCHECK")
        assert ["CMD", *exec_form(healthcheck)] == services[name]["healthcheck"]["test"], name


def _compose_cli() -> list[str] | None:
    explicit = os.environ.get("DOCKER_COMPOSE")
    if explicit:
        return explicit.split()
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


@pytest.mark.parametrize("profile_args", [[], ["--profile", "cpu"]], ids=["gpu", "cpu"])
def test_docker_compose_config_accepts_the_file(profile_args):
    """Compose's own parser, where there is one (docker compose, or DOCKER_COMPOSE=path)."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` here (set DOCKER_COMPOSE to a Compose v2 binary to run this)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAT_", "COMPOSE_"))}
    if profile_args:
        env.update(CPU_ENV)
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), *profile_args, "config", "--services"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    pool = POOLS["cpu" if profile_args else "gpu"]
    assert set(result.stdout.split()) == {"redis", "postgres", SERVICE, "nginx", *pool}


def test_interpolation_helper_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}", env) == "x"
    assert interpolate("${EMPTY:-d}", env) == "d"
    assert interpolate("${EMPTY-d}", env) == ""
    assert interpolate("${UNSET:-${SET:-y}}", env) == "x"
    assert interpolate("${UNSET:-${ALSO_UNSET:-y}}", env) == "y"
    assert interpolate("$$SET ${SET:+alt}", env) == "$SET alt"
    with pytest.raises(ValueError):
        interpolate("${UNSET:?needed}", env)


# --- the judge pools ---------------------------------------------------------------------------


def _worker_urls(router: dict) -> list[str]:
    words = router["command"].split() if isinstance(router["command"], str) else router["command"]
    start = words.index("--worker-urls") + 1
    end = next((i for i in range(start, len(words)) if words[i].startswith("--")), len(words))
    return words[start:end]


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
@pytest.mark.parametrize("judges", [None, 4])
def test_the_router_names_every_judge_replica(profile, judges):
    """CAT_JUDGES replicas of the pool's judge; the router lists each by its container name
    (<project>-<service>-<n>, stable across restarts) on the port the judge serves."""
    judge, router = POOLS[profile]
    env = dict(CPU_ENV) if profile == "cpu" else {}
    if judges:
        port = "8001" if profile == "cpu" else "8000"
        urls = " ".join(f"http://cat-reward-{judge}-{k}:{port}" for k in range(1, judges + 1))
        env.update({"CAT_JUDGES": str(judges), "CAT_JUDGE_URLS" if profile == "gpu" else "CAT_JUDGE_URLS_CPU": urls})
    doc = load_compose(env)
    replicas = int(doc["services"][judge]["deploy"]["replicas"])
    assert replicas == (judges or 1)
    urls = _worker_urls(doc["services"][router])
    judge_port = option(doc["services"]["vllm"]["command"], "--port") if profile == "gpu" else option(image_command(JUDGE_DOCKERFILE), "--port")
    assert urls == [f"http://{doc['name']}-{judge}-{k}:{judge_port}" for k in range(1, replicas + 1)]
    assert "container_name" not in doc["services"][judge], "replicas cannot share a container name"
    words = doc["services"][router]["command"].split()
    assert option(words, "--policy") == "sticky_least_loaded"  # the measured choice (docs/router.md)
    assert option(load_compose({**env, "CAT_ROUTER_POLICY": "consistent_hash"})["services"][router]["command"].split(),
                  "--policy") == "consistent_hash"
    assert doc["services"][router]["build"]["dockerfile"] == "docker/router.Dockerfile"


def _claim_script() -> str:
    entry = load_compose()["services"]["vllm"]["entrypoint"]
    assert entry[:2] == ["/bin/sh", "-c"]
    return entry[2]


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock (util-linux) is not installed")
def test_each_gpu_judge_replica_claims_a_gpu_of_its_own(tmp_path):
    """The vllm entrypoint, run here with a stand-in `python3`: two replicas of a pool of two get
    GPUs 0 and 1, a third finds none and says so; a GPU is free again once its server exits."""
    claims = tmp_path / "claims"
    claims.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text('#!/bin/sh\necho "gpu=$CUDA_VISIBLE_DEVICES args=$*" > "$OUT"\nexec sleep "$HOLD"\n')
    fake.chmod(0o755)
    script = _claim_script().replace("/gpu-claims/", f"{claims}/")
    assert script != _claim_script()

    def start(name: str, hold: str = "30") -> subprocess.Popen:
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CAT_JUDGES": "2", "OUT": str(tmp_path / name), "HOLD": hold}
        with open(tmp_path / f"{name}.err", "wb") as err:
            return subprocess.Popen(["/bin/sh", "-c", script, "vllm-judge", "--model", "m", "--port", "8000"], env=env,
                                    stderr=err)

    def wait_for(path: Path) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if path.exists() and path.read_text():
                return path.read_text().strip()
            time.sleep(0.05)
        raise AssertionError(f"{path} never written")

    first = start("a")
    try:
        assert wait_for(tmp_path / "a") == "gpu=0 args=-m vllm.entrypoints.openai.api_server --model m --port 8000"
        second = start("b")
        try:
            assert wait_for(tmp_path / "b").startswith("gpu=1 ")
            third = start("c")
            assert third.wait(timeout=10) == 1
            assert "no free GPU among 2" in (tmp_path / "c.err").read_text()
        finally:
            second.kill()
            second.wait(timeout=10)
        again = start("d", hold="0")  # GPU 1's server died: its lock went with it
        assert again.wait(timeout=10) == 0
        assert wait_for(tmp_path / "d").startswith("gpu=1 ")
    finally:
        first.kill()
        first.wait(timeout=10)
