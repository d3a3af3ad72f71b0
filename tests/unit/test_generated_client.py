"""A client generated from openapi.json (datamodel-code-generator: pydantic models) builds
requests the server accepts, and refuses on the client side what the contract forbids and the
generator can carry (lengths, patterns, bounds, enums). Rules between fields (if/then, x-cat-rules)
are beyond what the generator turns into models; tests/fuzz checks the server keeps them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from .test_api import BODY, make_client  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wire(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated") / "cat_wire.py"
    subprocess.run(
        [
            sys.executable, "-m", "datamodel_code_generator",
            "--input", str(ROOT / "openapi.json"), "--input-file-type", "openapi",
            "--output-model-type", "pydantic_v2.BaseModel", "--formatters", "builtin", "--disable-timestamp",
            "--output", str(out),
        ],
        check=True, capture_output=True, timeout=120,
    )
    spec = importlib.util.spec_from_file_location("cat_wire", out)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cat_wire"] = module  # pydantic looks its generic models up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["cat_wire"]


def body(model) -> dict:
    return model.model_dump(mode="json", exclude_unset=True)


async def test_generated_models_build_requests_the_server_accepts(wire, make_client):  # noqa: F811
    client = await make_client(openrlhf_group_size=1)
    requests = {
        "/rewards": [
            wire.RewardRequest(prompt=BODY["prompt"], rollouts=BODY["rollouts"], mode=wire.Mode.rubric),
            wire.RewardRequest(
                prompt=[wire.ChatMessage(role="user", content="I have a fever.")],
                rollouts=["rest and fluids", "see a doctor"],
                rubric=[wire.RubricItem(criterion="Mentions drinking fluids.", points=2),
                        wire.RubricItem(criterion="Recommends antibiotics.", points=-4)],
            ),
            wire.RewardRequest(
                prompt="What is 2 + 3?", rollouts=["\\boxed{5}", "\\boxed{6}"], mode=wire.Mode.verifiable,
                reference="5", options=wire.RewardOptions(seed=7, answer_extractors=[wire.AnswerExtractor.boxed]),
                metadata=wire.RequestMetadata(run_id="r1", step=3, tags={"k": 1}),
            ),
        ],
        "/rewards/batch": [
            wire.BatchRequest(groups=[
                wire.RewardRequest(prompt=BODY["prompt"], rollouts=BODY["rollouts"]),
                wire.RewardRequest(prompt=BODY["prompt"], rollouts=["\\boxed{5}"], mode=wire.Mode.verifiable),
            ]),
        ],
        "/rewards/samples": [
            wire.SamplesRequest(
                prompt=BODY["prompt"], samples=[wire.SampleIn(rollout="\\boxed{5}", index=0)],
                group=wire.GroupSpec(size=1, step=0), options=wire.SampleOptions(num_criteria=5, max_criteria=8),
            ),
        ],
        "/openrlhf/reward": [
            wire.OpenRLHFRequest(query=["What is 2 + 3? \\boxed{5}"], prompts=["What is 2 + 3?"], labels=["5"]),
        ],
    }
    for path, models in requests.items():
        for model in models:
            response = await client.post(path, json=body(model))
            assert response.status_code == 200, (path, body(model), response.text)
    results = (await client.post("/rewards/batch", json=body(requests["/rewards/batch"][0]))).json()["results"]
    assert [r["ok"] for r in results] == [True, True]


def test_generated_models_refuse_what_the_contract_forbids(wire):
    refused = [
        lambda: wire.RewardRequest(prompt=" \n\t", rollouts=["a"]),  # a blank prompt (pattern)
        lambda: wire.RewardRequest(prompt="", rollouts=["a"]),  # minLength
        lambda: wire.RewardRequest(prompt="p", rollouts=[]),  # minItems
        lambda: wire.RewardRequest(prompt="p", rollouts=["a"] * 257),  # CAT_MAX_ROLLOUTS (256)
        lambda: wire.RewardRequest(prompt="p", rollouts=["a"], reference="   "),  # a blank reference
        lambda: wire.GroupSpec(size=257),  # CAT_MAX_ROLLOUTS
        lambda: wire.RequestMetadata(step=2**63),  # 64-bit
        lambda: wire.SampleOptions(rubric_source="supplied"),  # samples carry no rubric
        lambda: wire.SampleOptions(aggregator="none"),
        lambda: wire.OpenRLHFRequest(query=["x"], prompts=[" "]),  # a blank prompt
        lambda: wire.RewardRequest(prompt="p", rollouts=["a"], surprise=True),  # unknown field
    ]
    for build in refused:
        with pytest.raises(pydantic.ValidationError):
            build()
