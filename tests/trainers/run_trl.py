"""Train TRL's real GRPOTrainer for two steps on the CPU with cat-reward as its reward function
(run in the trainer venv by test_trainers.py). Usage: python run_trl.py POLICY_DIR SERVICE_URL OUT.json

Writes what the test checks: every call of the reward function (completions in, rewards out)
and the trainer's log history."""

from __future__ import annotations

import json
import sys
import time


def main(policy: str, url: str, out: str) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from cat_reward_trainers.trl import cat_reward_func

    torch.manual_seed(0)
    questions = ["What is 2 + 3?", "What is 7 - 4?", "Name a primary colour.", "What is 10 / 2?"]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in questions])

    config = GRPOConfig(
        output_dir=f"{out}.trainer",
        use_cpu=True,
        bf16=False,
        fp16=False,
        use_vllm=False,
        report_to="none",
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=16,
        max_steps=2,
        learning_rate=1e-6,
        save_strategy="no",
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        logging_steps=1,
        seed=0,
    )
    fast = {"synthesis": {"max_tokens": 160}, "rubric": {"max_tokens": 320}, "seed": 1}
    cat = cat_reward_func(url, num_generations=config.num_generations, mode="rubric", options=fast,
                          run_id=f"trainers-test-{time.time_ns()}")
    calls: list[dict] = []

    async def cat_reward(prompts, completions, **kwargs):
        started = time.monotonic()
        rewards = await cat(prompts=prompts, completions=completions, **kwargs)
        calls.append({
            "n_prompts": len(prompts),
            "completions": [c[0]["content"] for c in completions],
            "rewards": rewards,
            "step": kwargs["trainer_state"].global_step,
            "seconds": round(time.monotonic() - started, 2),
        })
        return rewards

    tokenizer = AutoTokenizer.from_pretrained(policy)
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = GRPOTrainer(model=model, args=config, train_dataset=dataset, reward_funcs=[cat_reward],
                          processing_class=tokenizer)
    started = time.monotonic()
    trainer.train()
    changed = sum(int(not torch.equal(before[n], p.detach())) for n, p in trainer.model.named_parameters())
    with open(out, "w") as f:
        json.dump({"calls": calls, "log_history": trainer.state.log_history, "changed_tensors": changed,
                   "train_seconds": round(time.monotonic() - started, 1)}, f, indent=1, default=str)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: run_trl.py POLICY_DIR SERVICE_URL OUT.json")
    main(*sys.argv[1:])
