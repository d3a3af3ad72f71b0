"""schemathesis against the committed openapi.json: generated requests (valid and invalid) to a
real `cat-reward serve` process whose anchor and judge are an instant stub. Zero 5xx, and every
response conforms to the schema (status codes, content types, bodies)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.service import serve, stop
from tests.support.stub_llm import StubServer

ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "openapi.json")


@schema.auth()
class FuzzKey:
    """The bearer key, applied the way the schema declares it (so cases without it are tested too)."""

    def get(self, case, context):
        return "fuzz-key"

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fuzz")
    with StubServer() as stub:
        process, url, log = serve(
            workdir,
            CAT_ANCHOR_BASE_URL=stub.url,
            CAT_ANCHOR_MODEL="stub-model",
            CAT_GROUP_DEADLINE_S="0.5",  # generated sample groups never fill up: do not wait long
            CAT_MAX_ROLLOUTS="32",
            CAT_LOG_LEVEL="WARNING",
            CAT_API_KEYS="fuzz-key:admin",  # the schema declares bearer auth: test it, with and without
        )
        yield url
        stop(process)
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@schema.parametrize()
@settings(max_examples=int(os.environ.get("CAT_FUZZ_EXAMPLES", "25")), deadline=None, suppress_health_check=list(HealthCheck), derandomize=bool(os.environ.get("CI")))
def test_api_conforms(case, service):
    # A request valid by the schema may still be refused by a rule the schema cannot say
    # (e.g. aggregator 'majority' needs mode 'verifiable'): a 4xx there is correct, not a bug.
    case.call_and_validate(
        base_url=service,
        timeout=60,
        excluded_checks=[positive_data_acceptance],
    )
