"""The Kubernetes manifests held to the code: render with `kubectl kustomize`, validate against
the Kubernetes schemas (kubernetes-validate, strict), and cross-check what the manifests say about
the service against the service itself. Each check returns a list of problems, each naming the
object and the value at fault, so a bad overlay value fails with a message that says which."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE_ROOT = ROOT / "deploy" / "kubernetes"
BASE = "base"
OVERLAYS = ["overlays/dev", "overlays/gpu"]
KUBERNETES_VERSION = "1.32.0"
SERVICE_NAME = "cat-reward"  # app.kubernetes.io/name of the service's pods
# Probe paths of images that are not ours: vLLM's server and vllm-router (their documented routes).
FOREIGN_ROUTES = {"vllm-judge": {"/health"}, "judge-router": {"/health", "/liveness", "/readiness"}}


def render(path: Path, timeout_s: float = 60) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RuntimeError("kubectl is not installed: scripts/test needs it for `kubectl kustomize`")
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def name_of(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def is_builtin(doc: dict) -> bool:
    return "." not in doc["apiVersion"].split("/")[0] or doc["apiVersion"].split("/")[0].endswith(".k8s.io")


def schema_problems(docs: list[dict], version: str = KUBERNETES_VERSION) -> list[str]:
    import kubernetes_validate

    problems = []
    for doc in docs:
        if not is_builtin(doc):
            continue  # CRDs (KEDA's ScaledObject): checked by keda_problems
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{name_of(doc)}: {exc.message} at {'.'.join(map(str, exc.path))}")
    return problems


# --- what the code says -------------------------------------------------------------------------


def settings_env_names() -> set[str]:
    from cat_reward.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def app_get_routes() -> set[str]:
    """The GET paths of the service's app (its OpenAPI document: the probes and /metrics are in it)."""
    from cat_reward.api import create_app
    from cat_reward.settings import Settings

    paths = create_app(Settings(auth="open"), with_history=False).openapi()["paths"]
    return {path for path, operations in paths.items() if "get" in operations}


def metric_names_exposed() -> set[str]:
    """Metric families on the service's /metrics, as a fresh process serves them."""
    import asyncio

    import httpx

    from cat_reward.api import create_app
    from cat_reward.settings import Settings

    async def scrape() -> str:
        app = create_app(Settings(auth="open", redis_url=None), with_history=False)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            response = await client.get("/metrics")
            response.raise_for_status()
            return response.text

    text = asyncio.run(scrape())
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))


def docker_images() -> dict[str, str | None]:
    """Image name -> pinned tag (None: ours, any tag) from docker/: the names our Dockerfiles are
    built as (compose.yaml's image: of a build, and `docker build ... -t NAME` in their headers),
    and the upstream images compose.yaml pins."""
    images: dict[str, str | None] = {}
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    for service in compose["services"].values():
        image = service.get("image")
        if not image:
            continue
        name, _, tag = image.rpartition(":") if ":" in image else (image, "", "")
        images[name] = None if "build" in service else tag
    for dockerfile in (ROOT / "docker").glob("*Dockerfile"):
        for match in re.finditer(r"docker build\b[^\n]*?-t\s+([a-z0-9][\w./-]*)", dockerfile.read_text()):
            images.setdefault(match.group(1).split(":")[0], None)
    return images


# --- the checks ---------------------------------------------------------------------------------


def pod_specs(docs: list[dict]):
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc, spec["template"]["spec"], spec["template"]["metadata"].get("labels", {})


def containers(pod: dict) -> list[dict]:
    return list(pod.get("initContainers", [])) + list(pod.get("containers", []))


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def config_map_named(docs: list[dict], name: str) -> dict | None:
    """A ConfigMap or Secret as a pod names it: kustomize appends a hash to generated names in
    the objects and in the references alike, so the reference is matched exactly."""
    for doc in docs:
        if doc["kind"] in ("ConfigMap", "Secret") and doc["metadata"]["name"] == name:
            return doc
    return None


def service_pods(docs: list[dict]):
    for doc, pod, labels in pod_specs(docs):
        if labels.get("app.kubernetes.io/name") == SERVICE_NAME:
            yield doc, pod


def env_problems(docs: list[dict]) -> list[str]:
    """Every CAT_* variable the service's pods get exists in Settings; the ConfigMaps and Secrets
    they load whole (envFrom) hold nothing else (a typo there would be ignored silently)."""
    known = settings_env_names()
    problems = []
    for doc, pod in service_pods(docs):
        for container in containers(pod):
            where = f"{name_of(doc)} container {container['name']}"
            for var in container.get("env", []):
                if var["name"].startswith("CAT_") and var["name"] not in known:
                    problems.append(f"{where}: env {var['name']} is not a setting of the service (settings.py)")
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                obj = config_map_named(docs, ref["name"])
                if obj is None:
                    continue  # a Secret the operator creates (README); checked by secret_problems
                keys = set(obj.get("data", {})) | set(obj.get("stringData", {}))
                for key in sorted(keys):
                    if key not in known:
                        problems.append(
                            f"{where}: {obj['kind']} {obj['metadata']['name']} key {key} is not a setting of the "
                            "service (settings.py)"
                        )
    return problems


def reference_problems(docs: list[dict]) -> list[str]:
    """Every key a pod reads from a rendered ConfigMap or Secret (valueFrom) is in it, and every
    ConfigMap a pod names is rendered."""
    problems = []
    for doc, pod, _ in pod_specs(docs):
        for container in containers(pod):
            where = f"{name_of(doc)} container {container['name']}"
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef")
                if ref and config_map_named(docs, ref["name"]) is None:
                    problems.append(f"{where}: envFrom ConfigMap {ref['name']} is not rendered")
            for var in container.get("env", []):
                for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    ref = var.get("valueFrom", {}).get(field)
                    if not ref:
                        continue
                    obj = config_map_named(docs, ref["name"])
                    if obj is None:
                        if kind == "ConfigMap":
                            problems.append(f"{where}: env {var['name']} reads ConfigMap {ref['name']}, not rendered")
                        continue
                    keys = set(obj.get("data", {})) | set(obj.get("stringData", {}))
                    if ref["key"] not in keys:
                        problems.append(f"{where}: env {var['name']} reads key {ref['key']!r} of {kind} {ref['name']}, "
                                        f"which has {sorted(keys)}")
    return problems


def secret_problems(docs: list[dict], readme: str) -> list[str]:
    """Secrets the pods need but the render does not hold must be ones the README tells the
    operator to create."""
    problems = []
    for doc, pod, _ in pod_specs(docs):
        names = set()
        for container in containers(pod):
            names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
            names |= {
                v["valueFrom"]["secretKeyRef"]["name"]
                for v in container.get("env", [])
                if "secretKeyRef" in v.get("valueFrom", {}) and not v["valueFrom"]["secretKeyRef"].get("optional")
            }
        for name in sorted(names):
            if config_map_named(docs, name) is None and f"create secret generic {name}" not in readme:
                problems.append(f"{name_of(doc)}: Secret {name} is neither rendered nor documented in deploy/kubernetes/README.md")
    return problems


def command_port(command: list[str]) -> int | None:
    for i, arg in enumerate(command):
        if arg == "--port" and i + 1 < len(command):
            return int(command[i + 1])
        if arg.startswith("--port="):
            return int(arg.split("=", 1)[1])
    return None


def port_problems(docs: list[dict]) -> list[str]:
    """The port each server is told to listen on is its declared containerPort; named probe and
    Service ports exist; Services select pods and reach a port those pods declare; the service's
    LLM URL points at a rendered Service and port."""
    problems = []
    pods = list(pod_specs(docs))
    for doc, pod, _ in pods:
        for container in pod.get("containers", []):
            where = f"{name_of(doc)} container {container['name']}"
            declared = {p["containerPort"] for p in container.get("ports", [])}
            names = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            listen = command_port(list(container.get("command", [])) + list(container.get("args", [])))
            if listen is not None and listen not in declared:
                problems.append(f"{where}: listens on --port {listen} but declares containerPort {sorted(declared)}")
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                get = container.get(probe_name, {}).get("httpGet")
                if get and isinstance(get["port"], str) and get["port"] not in names:
                    problems.append(f"{where}: {probe_name} port {get['port']!r} is not a declared port name")
                if get and isinstance(get["port"], int) and get["port"] not in declared:
                    problems.append(f"{where}: {probe_name} port {get['port']} is not a declared containerPort")
    services = by_kind(docs, "Service")
    for name, service in services.items():
        selector = service["spec"].get("selector", {})
        matched = [(d, p) for d, p, labels in pods if selector and selector.items() <= labels.items()]
        if not matched:
            problems.append(f"Service/{name}: its selector {selector} matches no pod template")
            continue
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for d, p in matched:
                ports = [cp for c in p.get("containers", []) for cp in c.get("ports", [])]
                if not any(target in (cp.get("name"), cp["containerPort"]) for cp in ports):
                    problems.append(f"Service/{name}: targetPort {target!r} is not a port of {name_of(d)}")
    for doc, pod in service_pods(docs):
        for container in pod.get("containers", []):
            for source in container.get("envFrom", []):
                obj = config_map_named(docs, (source.get("configMapRef") or {}).get("name", ""))
                for key in ("CAT_ANCHOR_BASE_URL", "CAT_JUDGE_BASE_URL"):
                    for url in ((obj or {}).get("data", {}).get(key) or "").split(","):
                        if not url.strip():
                            continue
                        parsed = urlparse(url.strip())
                        host = parsed.hostname or ""
                        if "." in host:
                            continue  # outside this namespace: not ours to check
                        service = services.get(host)
                        if service is None:
                            problems.append(f"{key}={url}: no Service named {host!r} in this render")
                        elif parsed.port not in {p["port"] for p in service["spec"]["ports"]}:
                            problems.append(f"{key}={url}: Service {host} has no port {parsed.port}")
    return list(dict.fromkeys(problems))  # the Job reads the same ConfigMap: say it once


def probe_problems(docs: list[dict], routes: set[str]) -> list[str]:
    """Every HTTP probe path exists: the service's in the app's GET routes, the judges' and the
    router's among their servers' documented routes."""
    problems = []
    for doc, pod, labels in pod_specs(docs):
        app_name = labels.get("app.kubernetes.io/name")
        known = routes if app_name == SERVICE_NAME else FOREIGN_ROUTES.get(app_name)
        for container in pod.get("containers", []):
            for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
                get = container.get(probe_name, {}).get("httpGet")
                if not get:
                    continue
                if known is None:
                    problems.append(f"{name_of(doc)}: {probe_name} on {get['path']} of an unknown server {app_name!r}")
                elif get["path"] not in known:
                    problems.append(
                        f"{name_of(doc)} container {container['name']}: {probe_name} path {get['path']} is not a route "
                        f"of {app_name} (known: {', '.join(sorted(known))})"
                    )
    return problems


def image_problems(docs: list[dict], images: dict[str, str | None]) -> list[str]:
    """Every image is one docker/ builds (any tag) or an upstream image at the tag compose pins."""
    problems = []
    for doc, pod, _ in pod_specs(docs):
        for container in containers(pod):
            image = container["image"]
            name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
            if name not in images:
                problems.append(f"{name_of(doc)} container {container['name']}: image {image} is not one of docker/ "
                                f"({', '.join(sorted(images))})")
            elif images[name] is not None and tag != images[name]:
                problems.append(f"{name_of(doc)} container {container['name']}: image {image}, but docker/compose.yaml "
                                f"pins {name}:{images[name]}")
    return problems


def keda_problems(docs: list[dict], metrics: set[str]) -> list[str]:
    """KEDA ScaledObjects (a CRD, so not in the Kubernetes schemas): each targets a rendered
    Deployment, and every cat_* metric a query names is on the service's /metrics."""
    problems = []
    deployments = by_kind(docs, "Deployment")
    for doc in docs:
        if doc["kind"] != "ScaledObject":
            continue
        spec = doc["spec"]
        target = spec.get("scaleTargetRef", {}).get("name")
        if target not in deployments:
            problems.append(f"{name_of(doc)}: scaleTargetRef {target!r} is not a rendered Deployment")
            continue
        if not spec.get("triggers"):
            problems.append(f"{name_of(doc)}: no triggers")
        for trigger in spec.get("triggers", []):
            meta = trigger.get("metadata", {})
            if trigger["type"] == "prometheus":
                missing = {"serverAddress", "query", "threshold"} - set(meta)
                if missing:
                    problems.append(f"{name_of(doc)}: prometheus trigger lacks {sorted(missing)}")
                    continue
                for metric in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{)\[]", meta["query"]):
                    if metric.startswith("cat_") and metric not in metrics:  # the service's (vllm:* is vLLM's)
                        problems.append(f"{name_of(doc)}: query metric {metric} is not on the service's /metrics")
            elif trigger["type"] == "cpu":
                if trigger.get("metricType") not in ("Utilization", "AverageValue") or "value" not in meta:
                    problems.append(f"{name_of(doc)}: cpu trigger needs metricType and metadata.value")
            else:
                problems.append(f"{name_of(doc)}: unexpected trigger type {trigger['type']!r}")
    autoscalers = [d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    for target in sorted({t for t in autoscalers if autoscalers.count(t) > 1}):
        problems.append(f"Deployment/{target}: scaled by both an HPA and a ScaledObject")
    return problems


def service_shape_problems(docs: list[dict]) -> list[str]:
    """The service's Deployment: >= 2 replicas, hardened containers with resources, a preStop
    pause and a grace period that covers it plus the longest group (3 x CAT_LLM_TIMEOUT_S)."""
    problems = []
    deployment = by_kind(docs, "Deployment").get(SERVICE_NAME)
    if deployment is None:
        return [f"no Deployment {SERVICE_NAME}"]
    spec = deployment["spec"]
    if spec.get("replicas", 1) < 2:
        problems.append(f"Deployment/{SERVICE_NAME}: replicas {spec.get('replicas', 1)} < 2")
    pod = spec["template"]["spec"]
    for container in containers(pod):
        sc = container.get("securityContext", {})
        where = f"Deployment/{SERVICE_NAME} container {container['name']}"
        if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False):
            problems.append(f"{where}: needs readOnlyRootFilesystem and allowPrivilegeEscalation: false")
        if not (sc.get("runAsNonRoot") or pod.get("securityContext", {}).get("runAsNonRoot")):
            problems.append(f"{where}: needs runAsNonRoot")
        resources = container.get("resources", {})
        if not (resources.get("requests") and resources.get("limits")):
            problems.append(f"{where}: needs resource requests and limits")
    main = next(c for c in pod["containers"] if c["name"] == SERVICE_NAME)
    pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    if not pre_stop:
        problems.append(f"Deployment/{SERVICE_NAME}: no preStop sleep")
        pre_stop = 0
    timeout = 300.0  # the setting's default
    for source in main.get("envFrom", []):
        obj = config_map_named(docs, (source.get("configMapRef") or {}).get("name", ""))
        if obj and "CAT_LLM_TIMEOUT_S" in obj.get("data", {}):
            timeout = float(obj["data"]["CAT_LLM_TIMEOUT_S"])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < pre_stop + 3 * timeout:
        problems.append(
            f"Deployment/{SERVICE_NAME}: terminationGracePeriodSeconds {grace} < preStop {pre_stop} + 3 x "
            f"CAT_LLM_TIMEOUT_S {timeout:g}: a rolling update would cut groups in flight"
        )
    return problems


def judge_problems(docs: list[dict]) -> list[str]:
    """GPU judges request nvidia.com/gpu; the router discovers judges on the port they listen on."""
    problems = []
    judge = by_kind(docs, "Deployment").get("vllm-judge")
    router = by_kind(docs, "Deployment").get("judge-router")
    if judge is None or router is None:
        return problems
    pod = judge["spec"]["template"]["spec"]
    container = pod["containers"][0]
    if container["image"].startswith("vllm/"):
        for part in ("requests", "limits"):
            if "nvidia.com/gpu" not in container.get("resources", {}).get(part, {}):
                problems.append(f"Deployment/vllm-judge: GPU image without nvidia.com/gpu {part}")
    args = router["spec"]["template"]["spec"]["containers"][0].get("args", [])
    discovery = [a.split("=", 1)[1] for a in args if a.startswith("--service-discovery-port=")]
    judge_ports = {p["containerPort"] for p in container.get("ports", [])}
    if not discovery or int(discovery[0]) not in judge_ports:
        problems.append(f"Deployment/judge-router: --service-discovery-port {discovery} is not a judge port {sorted(judge_ports)}")
    labels = judge["spec"]["template"]["metadata"]["labels"]
    selectors = args[args.index("--selector") + 1:] if "--selector" in args else []
    selectors = [s for s in selectors if "=" in s and not s.startswith("--")]
    if not selectors or not all(labels.get(k) == v for k, v in (s.split("=", 1) for s in selectors)):
        problems.append(f"Deployment/judge-router: --selector {selectors} does not match the judge pods' labels")
    return problems


def history_problems(docs: list[dict], readme: str) -> list[str]:
    """The migration Job and the replicas share one history: CAT_DATABASE_URL is PostgreSQL, in a
    rendered Secret or ConfigMap the service loads, or in the README's command that creates it."""
    import base64

    for _, pod in service_pods(docs):
        for container in pod.get("containers", []):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                obj = config_map_named(docs, ref["name"]) or {}
                if "CAT_DATABASE_URL" in obj.get("data", {}):
                    raw = obj["data"]["CAT_DATABASE_URL"]
                    url = base64.b64decode(raw).decode() if obj["kind"] == "Secret" else raw
                    if not url.startswith(("postgresql://", "postgres://")):
                        return [f"{obj['kind']} {obj['metadata']['name']}: CAT_DATABASE_URL is not PostgreSQL"]
                    return []
    if "--from-literal=CAT_DATABASE_URL='postgresql://" in readme:
        return []
    return ["no CAT_DATABASE_URL for the service: neither rendered nor in the README's create secret command"]


def all_problems(docs: list[dict]) -> list[str]:
    readme = (KUSTOMIZE_ROOT / "README.md").read_text() if (KUSTOMIZE_ROOT / "README.md").exists() else ""
    return (
        schema_problems(docs)
        + env_problems(docs)
        + reference_problems(docs)
        + secret_problems(docs, readme)
        + port_problems(docs)
        + probe_problems(docs, app_get_routes())
        + image_problems(docs, docker_images())
        + keda_problems(docs, metric_names_exposed())
        + service_shape_problems(docs)
        + judge_problems(docs)
        + history_problems(docs, readme)
    )
