"""deploy/ray/serve.yaml: valid for `serve deploy` (Serve's own config schema), its import path is
the deployment the code defines, its CAT_* variables are settings."""

from __future__ import annotations

import warnings
from pathlib import Path

import yaml

from .manifests import settings_env_names

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "ray" / "serve.yaml"


def test_serve_config_is_valid_and_matches_the_code():
    with warnings.catch_warnings():  # Serve's pydantic v1 shims warn at import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

        from cat_reward import ray_serve

    raw = yaml.safe_load(CONFIG.read_text())
    config = ServeDeploySchema.model_validate(raw)
    # The schema lets unknown keys of a deployment through (a misspelt option would be ignored):
    # every key must be a field.
    for app in raw["applications"]:
        assert sorted(set(app) - set(ServeApplicationSchema.model_fields)) == []
        for deployment in app["deployments"]:
            assert sorted(set(deployment) - set(DeploymentSchema.model_fields)) == []
    (application,) = config.applications
    module, _, attribute = application.import_path.partition(":")
    assert module == ray_serve.__name__ and getattr(ray_serve, attribute) is ray_serve.app
    assert application.name == ray_serve.APP_NAME
    assert [d.name for d in application.deployments] == [ray_serve.DEPLOYMENT_NAME]
    env = application.runtime_env["env_vars"]
    assert sorted(set(env) - settings_env_names()) == []
    autoscaling = raw["applications"][0]["deployments"][0]["autoscaling_config"]
    assert autoscaling["min_replicas"] >= 2 and "target_ongoing_requests" in autoscaling
