"""The adapters' own logic, without the trainers: against the real app in-process (scripted anchor
and judge), called the way each trainer calls them. Fast; runs in the service venv."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

ADAPTERS = Path(__file__).resolve().parents[2] / "trainer_adapters"
if importlib.util.find_spec("cat_reward_trainers") is None:  # the service venv does not install them
    sys.path.insert(0, str(ADAPTERS))

from cat_reward.api import create_app  # noqa: E402
from cat_reward.backends.scripted import ScriptedLLM  # noqa: E402
from cat_reward.engine.ports import Roles  # noqa: E402
from cat_reward.settings import Settings  # noqa: E402
from cat_reward_trainers import openrlhf as openrlhf_adapter  # noqa: E402
from cat_reward_trainers import verl as verl_adapter  # noqa: E402
from cat_reward_trainers.trl import cat_reward_func  # noqa: E402
from tests.unit.scripts import anchor_script, judge_script  # noqa: E402

pytestmark = pytest.mark.anyio

PROMPT = [{"role": "user", "content": "What is 2 + 3?"}]


def judge(response: str, criterion: str):
    if "garbled" in response:
        return "maybe"  # never yes or no: that rollout's reward cannot be computed
    return "5" in response


class Paths(httpx.AsyncBaseTransport):
    def __init__(self, inner):
        self.inner = inner
        self.paths: list[str] = []

    async def handle_async_request(self, request):
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def app():
    anchor = ScriptedLLM(anchor_script(), role="anchor")
    app = create_app(Settings(group_deadline_s=20), roles=Roles(anchor=anchor, judge=ScriptedLLM(judge_script(judge), role="judge")),
                     with_history=False)
    app.state.anchor = anchor
    async with app.router.lifespan_context(app):
        yield app


def syntheses(app) -> int:
    return sum(1 for c in app.state.anchor.calls if c.stage == "synthesis")


class State:
    global_step = 3


def conversational(texts):
    return [[{"role": "assistant", "content": t}] for t in texts]


async def test_trl_whole_groups_go_to_the_batch_route(app):
    transport = Paths(httpx.ASGITransport(app=app))
    metrics, extras = {}, {}
    reward = cat_reward_func("http://svc", num_generations=2, transport=transport, process_layout=lambda: (0, 1))
    texts = ["\\boxed{5}", "six", "5 it is", "garbled"]
    rewards = await reward(
        prompts=[PROMPT] * 2 + [[{"role": "user", "content": "Add 1 and 4."}]] * 2,
        completions=conversational(texts),
        completion_ids=None,
        trainer_state=State(),
        log_metric=lambda name, value: metrics.__setitem__(name, value),
        log_extra=lambda column, values: extras.__setitem__(column, values),
        answer=["5", "5", "5", "5"],
    )
    assert rewards == [1.0, 0.0, 1.0, None]  # None: TRL makes it NaN and leaves it out
    assert reward.__name__ == "cat_reward"
    assert transport.paths == ["/rewards/batch"] and syntheses(app) == 2
    assert metrics == {"cat/null_rewards": 1.0, "cat/failed_groups": 0.0}
    assert extras["cat_error"][:3] == ["", "", ""] and "verdict" in extras["cat_error"][3]


async def test_trl_groups_split_across_processes_meet_in_the_service(app):
    """Two processes of 3 completions each, G=2: the middle group is cut between them."""
    transport = Paths(httpx.ASGITransport(app=app))
    prompts = [[{"role": "user", "content": f"Question {g} [{uuid.uuid4().hex[:6]}]: 2 + 3?"}] for g in range(3)]
    texts = ["5", "4", "\\boxed{5}", "no", "five = 5", "seven"]
    flat_prompts = [prompts[i // 2] for i in range(6)]
    funcs = [
        cat_reward_func("http://svc", num_generations=2, transport=transport, process_layout=lambda r=rank: (r, 2),
                        run_id="split-test")
        for rank in (0, 1)
    ]
    first, second = await asyncio.gather(
        funcs[0](prompts=flat_prompts[:3], completions=texts[:3], trainer_state=State()),
        funcs[1](prompts=flat_prompts[3:], completions=texts[3:], trainer_state=State()),
    )
    assert first + second == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert set(transport.paths) == {"/rewards/samples"}
    assert syntheses(app) == 3  # each group once, the cut one included


async def test_trl_never_split_refuses_a_cut_group(app):
    reward = cat_reward_func("http://svc", num_generations=2, split_groups="never",
                             transport=httpx.ASGITransport(app=app), process_layout=lambda: (1, 2))
    with pytest.raises(ValueError, match="cut groups"):
        await reward(prompts=["p"] * 3, completions=["a", "b", "c"], trainer_state=State())


async def test_trl_rejects_a_wrong_num_generations(app):
    reward = cat_reward_func("http://svc", num_generations=2, transport=httpx.ASGITransport(app=app),
                             process_layout=lambda: (0, 1))
    with pytest.raises(ValueError, match="num_generations"):
        await reward(prompts=["p", "q"], completions=["a", "b"], trainer_state=State())


async def test_verl_compute_score_groups_by_uid(app):
    transport = httpx.ASGITransport(app=app)
    uid = str(uuid.uuid4())
    kwargs = dict(cat_url=f"http://svc-{uid}", client_kwargs={"transport": transport})
    extra = {"uid": uid, "rollout_n": 2, "prompt": PROMPT}
    results = await asyncio.gather(
        verl_adapter.compute_score("src", "2 + 3 = \\boxed{5}", "5", dict(extra), **kwargs),
        verl_adapter.compute_score("src", "it is 4", "5", dict(extra), **kwargs),
    )
    assert [r["score"] for r in results] == [1.0, 0.0]
    assert all(r["cat_group_scored"] == 2 and r["cat_partial_group"] == 0.0 for r in results)
    assert syntheses(app) == 1

    with pytest.raises(ValueError, match="CatRewardLoopManager"):
        await verl_adapter.compute_score("src", "x", "5", {"rollout_n": 2}, **kwargs)

    uid2 = str(uuid.uuid4())
    garbled = {"uid": uid2, "rollout_n": 2, "prompt": PROMPT}
    with pytest.raises(verl_adapter.RewardUnavailable):
        await asyncio.gather(
            verl_adapter.compute_score("src", "garbled", "5", dict(garbled), **kwargs),
            verl_adapter.compute_score("src", "5", "5", dict(garbled), **kwargs),
        )
    uid3 = str(uuid.uuid4())
    fallback = {"uid": uid3, "rollout_n": 2, "prompt": PROMPT}
    scored = await asyncio.gather(
        verl_adapter.compute_score("src", "garbled", "5", dict(fallback), null_score=-1.0, **kwargs),
        verl_adapter.compute_score("src", "5", "5", dict(fallback), null_score=-1.0, **kwargs),
    )
    assert [s["score"] for s in scored] == [-1.0, 1.0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openrlhf_reward_func_over_real_http(tmp_path):
    """OpenRLHF calls reward_func in threads, one sample each; it posts to /openrlhf/reward."""
    import uvicorn

    anchor = ScriptedLLM(anchor_script(), role="anchor")
    app = create_app(
        Settings(openrlhf_group_size=2, group_deadline_s=20, data_dir=tmp_path),
        roles=Roles(anchor=anchor, judge=ScriptedLLM(judge_script(judge), role="judge")),
        with_history=False,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        prompt = f"<|im_start|>user\nWhat is 2 + 3? [{uuid.uuid4().hex[:6]}]<|im_end|>\n<|im_start|>assistant\n"
        results: dict[str, object] = {}

        def call(response: str):
            try:
                results[response] = openrlhf_adapter.reward_func(
                    [prompt + response + "<|im_end|>"], [prompt], [None], base_url=url
                )
            except Exception as exc:  # noqa: BLE001 - checked below
                results[response] = exc

        threads = [threading.Thread(target=call, args=(r,)) for r in ("\\boxed{5}", "six")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results["\\boxed{5}"] == {
            "rewards": [1.0], "scores": [1.0], "extra_logs": {"cat_group_scored": [2.0], "cat_partial_group": [0.0]}
        }
        assert results["six"]["rewards"] == [0.0]
        with pytest.raises(openrlhf_adapter.RewardServiceError) as info:
            openrlhf_adapter.reward_func(["something else"], [prompt], [None], base_url=url)
        assert info.value.status == 422
    finally:
        server.should_exit = True
        thread.join(20)
