"""Plug the cat-reward Compute-as-Teacher reward service into RL trainers.

    cat_reward_trainers.trl       cat_reward_func(...)        for TRL's GRPOTrainer(reward_funcs=...)
    cat_reward_trainers.verl      compute_score, CatRewardLoopManager, CatGroupRewardManager
    cat_reward_trainers.openrlhf  reward_func(queries, prompts, labels) for --reward.remote_url x.py

Each submodule imports its trainer (if at all) only when used; this package needs only
cat-reward-client. The service address defaults to $CAT_REWARD_URL, else http://127.0.0.1:8000.
"""

__version__ = "0.1.0"
