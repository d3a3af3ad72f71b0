"""Score rollouts through verl 0.9.1's own reward-loop machinery with cat-reward (run in the
trainer venv by test_trainers.py). Usage: python run_verl.py POLICY_DIR SERVICE_URL OUT.json

The reward manager class and compute_score are resolved from a config by verl itself
(resolve_reward_manager_cls, get_custom_reward_fn) with exactly the keys the adapters' README
gives; the manager is built inside the running loop, as verl's RewardLoopWorker does, and scores
one sample per run_single call, all concurrently, as the agent loop sends them. Then the legacy
group-aware manager scores the same batch in one call."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid


def build_batch(tokenizer, questions, answers):
    import numpy as np
    import torch
    from verl import DataProto

    prompts, responses, raw_prompts, uids = [], [], [], []
    for question, group in zip(questions, answers):
        uid = str(uuid.uuid4())
        messages = [{"role": "user", "content": question}]
        prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "input_ids"):
            prompt_ids = prompt_ids["input_ids"]
        for answer in group:
            prompts.append(list(prompt_ids))
            responses.append(tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
            raw_prompts.append(messages)
            uids.append(uid)
    p_len, r_len = max(map(len, prompts)), max(map(len, responses)) + 3
    pad = tokenizer.pad_token_id or 0
    prompt_t = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])  # left-padded, as verl's
    response_t = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])  # right-padded
    mask = torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (r_len - len(r))
                         for p, r in zip(prompts, responses)])
    n = len(prompts)
    return DataProto.from_dict(
        tensors={"prompts": prompt_t, "responses": response_t, "attention_mask": mask,
                 "input_ids": torch.cat([prompt_t, response_t], dim=1)},
        non_tensors={
            "data_source": np.array(["cat-test"] * n, dtype=object),
            "reward_model": np.array([{"ground_truth": "", "style": "model"}] * n, dtype=object),
            "extra_info": np.array([{"index": i} for i in range(n)], dtype=object),
            "uid": np.array(uids, dtype=object),
            "raw_prompt": np.array(raw_prompts + [None], dtype=object)[:-1],
        },
    ), [len(r) for r in responses]


async def reward_loop(config, tokenizer, data):
    from verl.trainer.ppo.reward import get_custom_reward_fn, resolve_reward_manager_cls

    manager_cls = resolve_reward_manager_cls(config)
    manager = manager_cls(config=config, tokenizer=tokenizer, compute_score=get_custom_reward_fn(config))
    started = time.monotonic()
    results = await asyncio.gather(*[manager.run_single(data[i : i + 1]) for i in range(len(data))])
    return type(manager).__name__, results, time.monotonic() - started


def main(policy: str, url: str, out: str) -> None:
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from cat_reward_trainers.verl import CatGroupRewardManager

    tokenizer = AutoTokenizer.from_pretrained(policy)
    questions = ["What is 2 + 3?", "What is 9 - 4?"]
    answers = [["2 + 3 = 5, so \\boxed{5}.", "It is \\boxed{6}."], ["9 - 4 = 5. \\boxed{5}", "\\boxed{5}"]]
    data, response_lengths = build_batch(tokenizer, questions, answers)
    fast = {"synthesis": {"max_tokens": 160}, "seed": 1}
    config = OmegaConf.create({
        "actor_rollout_ref": {"rollout": {"n": 2}},
        "reward": {
            "custom_reward_function": {
                "path": "pkg://cat_reward_trainers.verl",
                "name": "compute_score",
                "reward_kwargs": {"cat_url": url, "mode": "judge", "options": fast},
            },
            "reward_manager": {
                "source": "importlib",
                "name": "CatRewardLoopManager",
                "module": {"path": "pkg://cat_reward_trainers.verl"},
            },
        },
    })
    manager_name, results, seconds = asyncio.run(reward_loop(config, tokenizer, data))

    legacy = CatGroupRewardManager(tokenizer, num_examine=0, base_url=url, mode="judge", options=fast)
    started = time.monotonic()
    legacy_out = legacy(data, return_dict=True)
    legacy_seconds = time.monotonic() - started
    tensor = legacy_out["reward_tensor"]
    # one group per request, both requests at once (the step's groups go out together)
    split = CatGroupRewardManager(tokenizer, num_examine=0, base_url=url, mode="judge", options=fast,
                                  max_groups_per_request=1, max_concurrent_requests=2)
    split_tensor = split(data, return_dict=True)["reward_tensor"]
    with open(out, "w") as f:
        json.dump({
            "manager": manager_name,
            "uids": [str(u) for u in data.non_tensor_batch["uid"]],
            "reward_loop": [{"reward_score": r["reward_score"], "reward_extra_info": r["reward_extra_info"]}
                            for r in results],
            "reward_loop_seconds": round(seconds, 2),
            "legacy_scores": [float(tensor[i].sum()) for i in range(len(data))],
            "legacy_split_scores": [float(split_tensor[i].sum()) for i in range(len(data))],
            "legacy_nonzero_at": [int(tensor[i].nonzero().max()) if tensor[i].any() else None for i in range(len(data))],
            "response_lengths": response_lengths,
            "legacy_seconds": round(legacy_seconds, 2),
        }, f, indent=1, default=str)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: run_verl.py POLICY_DIR SERVICE_URL OUT.json")
    main(*sys.argv[1:])
