"""deploy/kubernetes: every overlay renders with `kubectl kustomize`, validates strictly against the
Kubernetes 1.32 schemas, and agrees with the code (settings, routes, ports, metrics, images).
A bad value must fail with a message that names it: the second half feeds the checks broken
manifests, through kustomize as a user's overlay would, and checks the message."""

from __future__ import annotations

import copy
import os
import textwrap

import pytest

from . import manifests as m


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {overlay: m.render(m.KUSTOMIZE_ROOT / overlay) for overlay in [m.BASE, *m.OVERLAYS]}


def kinds(docs):
    return sorted({d["kind"] for d in docs})


def test_every_overlay_renders(rendered):
    base = {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "NetworkPolicy", "PodDisruptionBudget",
            "Service", "ServiceAccount"}
    assert base <= set(kinds(rendered["base"]))
    dev, gpu = rendered["overlays/dev"], rendered["overlays/gpu"]
    assert {"StatefulSet", "Secret", "Namespace", "Role", "RoleBinding"} <= set(kinds(dev))
    assert {"ScaledObject"} <= set(kinds(gpu)) and "HorizontalPodAutoscaler" not in kinds(gpu)
    assert {d["metadata"].get("namespace") for d in gpu if d["kind"] != "Namespace"} == {"cat-reward"}
    assert {d["metadata"]["name"] for d in dev if d["kind"] == "StatefulSet"} == {"redis", "postgres"}


def test_base_validates_and_reads_only_settings(rendered):
    """The base alone (judges external, Secret created by the operator) is valid Kubernetes."""
    base = rendered[m.BASE]
    assert m.schema_problems(base) + m.env_problems(base) + m.probe_problems(base, m.app_get_routes()) == []


@pytest.mark.parametrize("overlay", m.OVERLAYS)
def test_overlay_holds_to_the_schemas_and_the_code(rendered, overlay):
    assert m.all_problems(rendered[overlay]) == []


def test_the_checks_see_what_they_check(rendered):
    """Guards against checks that pass on nothing: the objects they inspect are there."""
    gpu = rendered["overlays/gpu"]
    pods = {doc["metadata"]["name"]: pod for doc, pod, _ in m.pod_specs(gpu)}
    assert {"cat-reward", "cat-reward-migrate", "vllm-judge", "judge-router"} <= set(pods)
    service = pods["cat-reward"]["containers"][0]
    assert service["readinessProbe"]["httpGet"]["path"] in m.app_get_routes()
    assert {"cat_reward_inflight_groups", "cat_reward_judge_queue_depth"} <= m.metric_names_exposed()
    queries = [t["metadata"]["query"] for d in gpu if d["kind"] == "ScaledObject" for t in d["spec"]["triggers"] if t["type"] == "prometheus"]
    assert 'sum(cat_reward_judge_queue_depth{role="judge"})' in queries
    assert pods["vllm-judge"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"cat-reward", "cat-reward-judge-cpu"} <= set(m.docker_images())
    assert pods["cat-reward-migrate"]["containers"][0]["command"][:2] == ["cat-reward", "migrate"]


# --- bad values fail, and the message names them ------------------------------------------------


def user_overlay(tmp_path, body: str) -> list[dict]:
    """A user's overlay on top of overlays/dev, rendered by kustomize like the real ones."""
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {os.path.relpath(m.KUSTOMIZE_ROOT / 'overlays' / 'dev', tmp_path)}\n" + textwrap.dedent(body)
    )
    return m.render(tmp_path)


def test_unknown_setting_in_an_overlay_is_named(tmp_path):
    docs = user_overlay(tmp_path, """
        configMapGenerator:
          - name: cat-reward-settings
            behavior: merge
            literals:
              - CAT_LLM_TIMEOUT_SECONDS=60
        """)
    problems = m.all_problems(docs)
    assert len(problems) == 3, problems  # the init container and the service read it
    assert all("key CAT_LLM_TIMEOUT_SECONDS is not a setting of the service" in p for p in problems), problems


def test_probe_path_that_does_not_exist_is_named(tmp_path):
    docs = user_overlay(tmp_path, """
        patches:
          - target: {kind: Deployment, name: cat-reward}
            patch: |-
              - op: replace
                path: /spec/template/spec/containers/0/readinessProbe/httpGet/path
                value: /ready
        """)
    assert m.all_problems(docs) == [
        "Deployment/cat-reward container cat-reward: readinessProbe path /ready is not a route of cat-reward "
        f"(known: {', '.join(sorted(m.app_get_routes()))})"
    ]


def test_unknown_field_fails_the_strict_schema(rendered):
    docs = copy.deepcopy(rendered["overlays/dev"])
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cat-reward")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    problems = m.schema_problems(docs)
    assert len(problems) == 1 and problems[0].startswith("Deployment/cat-reward: ") and "readinesProbe" in problems[0]


def test_port_image_grace_and_metric_mismatches_are_named(rendered):
    docs = copy.deepcopy(rendered["overlays/gpu"])
    deployments = m.by_kind(docs, "Deployment")
    pod = deployments["cat-reward"]["spec"]["template"]["spec"]
    pod["containers"][0]["command"][-1] = "8080"
    pod["terminationGracePeriodSeconds"] = 60
    deployments["vllm-judge"]["spec"]["template"]["spec"]["containers"][0]["image"] = "vllm/vllm-openai:latest"
    scaled = m.by_kind(docs, "ScaledObject")["cat-reward"]
    scaled["spec"]["triggers"][0]["metadata"]["query"] = "sum(cat_queue_depth_groups)"
    problems = "\n".join(m.port_problems(docs) + m.image_problems(docs, m.docker_images())
                         + m.service_shape_problems(docs) + m.keda_problems(docs, m.metric_names_exposed()))
    assert "listens on --port 8080 but declares containerPort [8000]" in problems
    assert "image vllm/vllm-openai:latest, but docker/compose.yaml pins vllm/vllm-openai:v0.11.0" in problems
    assert "terminationGracePeriodSeconds 60 < preStop 10 + 3 x CAT_LLM_TIMEOUT_S 120" in problems
    assert "query metric cat_queue_depth_groups is not on the service's /metrics" in problems


def test_llm_url_must_point_at_a_rendered_service(tmp_path):
    docs = user_overlay(tmp_path, """
        configMapGenerator:
          - name: cat-reward-settings
            behavior: merge
            literals:
              - CAT_ANCHOR_BASE_URL=http://judge-routr:8000/v1
        """)
    assert m.port_problems(docs) == ["CAT_ANCHOR_BASE_URL=http://judge-routr:8000/v1: no Service named 'judge-routr' in this render"]


def test_sqlite_history_in_an_overlay_is_named(tmp_path):
    docs = user_overlay(tmp_path, """
        secretGenerator:
          - name: cat-reward-secrets
            behavior: merge
            literals:
              - CAT_DATABASE_URL=sqlite:////data/history.sqlite3
        """)
    assert m.history_problems(docs, "") == [
        next(f"Secret {d['metadata']['name']}: CAT_DATABASE_URL is not PostgreSQL" for d in docs
             if d["kind"] == "Secret" and d["metadata"]["name"].startswith("cat-reward-secrets"))
    ]
