"""schemathesis against the committed openapi.json, every check (`--checks all`, with
positive_data_acceptance): generated requests, valid and invalid, to a real `cat-reward serve`
process with the default limits (the ones openapi.json states), whose anchor and judge are an
instant stub. Zero 5xx, every response as the schema says, every request the schema allows
accepted and every one it forbids refused.

Rules JSON Schema cannot say are listed in openapi.json under ``x-cat-rules``; a request
generated as valid is made to keep them (tests/fuzz/rules.py), and tests/fuzz/exceptions.yaml
gives each its reason. Bounded: CAT_FUZZ_EXAMPLES examples per operation (default 25)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.fuzz.rules import REPAIRS, repair_case
from tests.support.service import serve, stop
from tests.support.stub_llm import StubServer

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi.json"
EXCEPTIONS = yaml.safe_load((Path(__file__).parent / "exceptions.yaml").read_text())
schema = schemathesis.openapi.from_path(OPENAPI)
load_all_checks()
ALL_CHECKS = [check for check in CHECKS.get_all() if check.__name__ not in EXCEPTIONS["checks"]]
MAX_DEADLINE_S = 0.5  # a generated sample group never fills up: its requests wait this long at most


@schema.auth()
class FuzzKey:
    """The bearer key, applied the way the schema declares it (so cases without it are tested too)."""

    def get(self, case, context):
        return "fuzz-key"

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.hook
def map_case(context, case):
    body = case.body if isinstance(case.body, dict) else None
    group = body.get("group") if body is not None else None
    if isinstance(group, dict) and isinstance(group.get("deadline_s"), (int, float)) and group["deadline_s"] > MAX_DEADLINE_S:
        group["deadline_s"] = MAX_DEADLINE_S  # still valid; only shorter waits
    if case.meta is not None and case.meta.generation.mode.is_positive:
        query = dict(case.query) if isinstance(case.query, dict) else None
        repair_case(case.method.upper(), case.path, case.body, query)
        if query is not None:
            case.query = query
    return case


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    with StubServer() as stub:
        process, url, log = serve(
            workdir,
            CAT_ANCHOR_BASE_URL=stub.url,
            CAT_ANCHOR_MODEL="stub-model",
            CAT_GROUP_DEADLINE_S=str(MAX_DEADLINE_S),
            CAT_LOG_LEVEL="WARNING",
            CAT_API_KEYS="fuzz-key:admin",  # the schema declares bearer auth: test it, with and without
        )
        yield url
        stop(process)
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("CAT_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=bool(os.environ.get("CI")),
)
def test_api_conforms(case, service):
    case.call_and_validate(base_url=service, timeout=60, checks=ALL_CHECKS)


def _rules_in(document: dict) -> dict[str, set[str]]:
    found = {name: set(s["x-cat-rules"]) for name, s in document["components"]["schemas"].items() if "x-cat-rules" in s}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if "x-cat-rules" in operation:
                found[f"{method.upper()} {path}"] = set(operation["x-cat-rules"])
    return found


def test_every_check_runs_and_every_rule_has_a_reason_and_a_repair():
    names = {check.__name__ for check in ALL_CHECKS}
    assert {positive_data_acceptance.__name__, negative_data_rejection.__name__} <= names
    assert EXCEPTIONS["checks"] == {}, "a relaxed check needs its reason here, and none is relaxed today"
    in_document = _rules_in(json.loads(OPENAPI.read_text()))
    listed = {owner: set(rules) for owner, rules in EXCEPTIONS["rules"].items()}
    assert in_document == listed, "openapi.json's x-cat-rules and tests/fuzz/exceptions.yaml differ"
    assert {owner: set(repairs) for owner, repairs in REPAIRS.items()} == listed, "a rule without a repair in rules.py"
    for owner, rules in EXCEPTIONS["rules"].items():
        for rule, reason in rules.items():
            assert isinstance(reason, str) and len(reason) > 20, f"{owner} {rule}: no reason given"
