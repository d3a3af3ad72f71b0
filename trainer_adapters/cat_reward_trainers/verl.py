"""CaT rewards for verl (0.9.x reward loop, and the older group-aware manager path).

The group in verl is the rollout ``uid``: ``RayPPOTrainer.fit`` gives every prompt of a batch
``non_tensor_batch["uid"] = uuid4()`` before ``repeat(rollout.n, interleave=True)``, keeps it
among the reward keys of the generation batch, and the agent loop copies each sample's
non-tensor fields (``uid`` and ``raw_prompt`` included) into the one-sample ``DataProto`` it
sends to the reward loop. verl 0.9.1's ``NaiveRewardManager.run_single`` then calls
``compute_score(data_source, solution_str, ground_truth, extra_info)`` WITHOUT the uid (nor the
prompt). So this module ships:

``CatRewardLoopManager``
    ``NaiveRewardManager`` that first copies the sample's ``uid``, its prompt (``raw_prompt``
    messages, else the decoded prompt) and ``actor_rollout_ref.rollout.n`` into ``extra_info``
    (keys ``uid``, ``prompt``, ``rollout_n``), then scores as the naive manager does. Select it
    with ``reward.reward_manager.source=importlib``,
    ``reward.reward_manager.module.path=pkg://cat_reward_trainers.verl``,
    ``reward.reward_manager.name=CatRewardLoopManager``.

``compute_score``
    async; sends the sample to ``POST /rewards/samples`` with ``group.id = uid`` and
    ``group.size = rollout_n`` and returns ``{"score": reward, ...}`` once the group is scored.
    Select it with ``reward.custom_reward_function.path=pkg://cat_reward_trainers.verl``,
    ``reward.custom_reward_function.name=compute_score``; its settings go in
    ``reward.custom_reward_function.reward_kwargs`` (``cat_url``, ``mode``, ``group_size``...).
    Any other manager that puts ``uid`` (and ``rollout_n`` or ``group_size``) into
    ``extra_info`` works too.

``CatGroupRewardManager``
    the legacy, synchronous manager interface (``__call__(data, return_dict=False)``, as
    ``verl.workers.reward_manager`` managers and TTRL's have): it sees the whole batch, groups
    it by ``uid`` and scores every group in ``POST /rewards/batch`` requests.

verl needs a number for every sample, so a reward the service could not compute raises
(``RewardUnavailable``) unless ``null_score`` is set: it never becomes a silent 0.
verl is imported only where it is needed (the managers), never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cat_reward_client import CatRewardClient, RewardGroup, SampleGroup

from ._common import LoopClients, content_text, prompt_json, service_url

log = logging.getLogger("cat_reward_trainers.verl")

__all__ = ["CatGroupRewardManager", "CatRewardLoopManager", "RewardUnavailable", "compute_score"]


class RewardUnavailable(RuntimeError):
    """The service answered, but this sample's reward could not be computed (and no ``null_score`` was set)."""


_clients: dict[str, LoopClients] = {}


def _loop_clients(url: str | None, client_kwargs: Mapping[str, Any] | None) -> LoopClients:
    url = service_url(url)
    if url not in _clients:
        _clients[url] = LoopClients(url, client_kwargs)
    return _clients[url]


async def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: Mapping[str, Any] | None = None,
    *,
    cat_url: str | None = None,
    group_size: int | None = None,
    mode: str | None = None,
    options: Mapping[str, Any] | None = None,
    use_ground_truth: bool = False,
    deadline_s: float | None = None,
    min_size: int | None = None,
    null_score: float | None = None,
    client_kwargs: Mapping[str, Any] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Score one rollout within its group (the rollouts sharing its ``uid``).

    Reads ``extra_info["uid"]`` (the group key), ``extra_info["rollout_n"]`` or ``group_size``
    (G), and ``extra_info["prompt"]``. Keyword settings (``reward_kwargs`` in verl's config):
    ``cat_url`` (default ``$CAT_REWARD_URL``), ``mode``, ``options`` (RewardOptions),
    ``use_ground_truth`` (send the dataset's ground truth as the reference), ``deadline_s`` and
    ``min_size`` of a group, ``null_score`` (the score of a sample the service could not score;
    default: raise ``RewardUnavailable``).

    Returns ``{"score", "cat_group_scored", "cat_partial_group"}``; the extra keys become
    verl's ``reward_extra_info``.
    """
    extra = dict(extra_info or {})
    uid = extra.get("uid")
    if uid is None:
        raise ValueError(
            "extra_info has no 'uid': verl's NaiveRewardManager does not pass the rollout uid to compute_score. "
            "Use reward.reward_manager.source=importlib reward.reward_manager.module.path=pkg://cat_reward_trainers.verl "
            "reward.reward_manager.name=CatRewardLoopManager (it adds uid, prompt and rollout_n to extra_info)."
        )
    size = group_size or extra.get("rollout_n")
    if not size:
        raise ValueError("the group size is unknown: pass group_size in reward_kwargs, or use CatRewardLoopManager")
    prompt = extra.get("prompt")
    prompt = prompt_json(prompt) if prompt else f"(verl rollout group {uid})"
    reference = str(ground_truth) if use_ground_truth and ground_truth not in (None, "") else None
    client = _loop_clients(cat_url, client_kwargs).get()
    result = await client.rewards_samples(
        prompt,
        [solution_str],
        SampleGroup(size=int(size), id=str(uid), deadline_s=deadline_s, min_size=min_size),
        mode=mode,
        reference=reference,
        options=options,
        metadata={"group_id": str(uid), "tags": {"trainer": "verl", "data_source": str(data_source)}},
    )
    reward = result.rewards[0]
    info = {
        "cat_group_scored": result.group.scored,
        "cat_partial_group": 1.0 if result.group.partial else 0.0,
    }
    if reward is None:
        reason = result.details[0].error or "no reason given"
        if null_score is None:
            raise RewardUnavailable(f"CaT reward of a rollout of group {uid} could not be computed: {reason}")
        log.warning("CaT reward of a rollout of group %s could not be computed (%s); using null_score", uid, reason)
        reward = null_score
    return {"score": float(reward), **info}


# --- reward loop manager (verl >= 0.7), built on first access so verl is imported lazily ---


def _rollout_n(config: Any) -> int | None:
    try:
        return int(config.actor_rollout_ref.rollout.n)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _messages(raw_prompt: Any) -> list[dict[str, str]] | None:
    try:
        messages = list(raw_prompt)
    except TypeError:
        return None
    if not messages or not all(isinstance(m, Mapping) for m in messages):
        return None
    return [{"role": str(m.get("role", "user")), "content": content_text(m.get("content"))} for m in messages]


def _build_loop_manager() -> type:
    import numpy as np
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager

    class CatRewardLoopManager(NaiveRewardManager):
        """``NaiveRewardManager`` that hands ``compute_score`` the rollout's ``uid``, prompt and
        group size in ``extra_info`` (``uid``, ``prompt``, ``rollout_n``)."""

        async def run_single(self, data):
            data = data[-1:]
            item = data[0]
            extra = dict(item.non_tensor_batch.get("extra_info") or {})
            uid = item.non_tensor_batch.get("uid")
            if uid is not None:
                extra["uid"] = str(uid)
            n = _rollout_n(self.config)
            if n is not None:
                extra.setdefault("rollout_n", n)
            if "prompt" not in extra:
                messages = _messages(item.non_tensor_batch.get("raw_prompt"))
                extra["prompt"] = messages if messages else await self.loop.run_in_executor(None, self._decode_prompt, item)
            data.non_tensor_batch["extra_info"] = np.array([extra], dtype=object)
            return await super().run_single(data)

        def _decode_prompt(self, item) -> str:
            prompt_ids = item.batch["prompts"]
            length = int(item.batch["attention_mask"][: prompt_ids.shape[-1]].sum())
            return self.tokenizer.decode(prompt_ids[-length:] if length else prompt_ids[:0], skip_special_tokens=True)

    CatRewardLoopManager.__module__ = __name__
    return CatRewardLoopManager


_lazy: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name == "CatRewardLoopManager":
        if name not in _lazy:
            _lazy[name] = _build_loop_manager()
        return _lazy[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- group-aware legacy manager ---------------------------------------------------------


class CatGroupRewardManager:
    """A synchronous, group-aware reward manager: ``__call__(data, return_dict=False)``.

    Groups the batch by ``non_tensor_batch["uid"]`` (order kept), decodes prompts and
    responses, scores the groups with ``POST /rewards/batch`` (``max_groups_per_request`` per
    request, up to ``max_concurrent_requests`` requests at once, so a step's groups reach the
    service together and its judge pool works on all of them), and puts each score on the last
    valid response token, as verl's managers do.

    Takes verl's manager arguments (``tokenizer``, ``num_examine``, ``compute_score`` (unused),
    ``reward_fn_key``) plus the service settings as keywords.
    """

    def __init__(
        self,
        tokenizer: Any,
        num_examine: int = 0,
        compute_score: Any = None,
        reward_fn_key: str = "data_source",
        *,
        base_url: str | None = None,
        mode: str | None = None,
        options: Mapping[str, Any] | None = None,
        use_ground_truth: bool = False,
        null_score: float | None = None,
        max_groups_per_request: int = 64,
        max_concurrent_requests: int = 8,
        **client_kwargs: Any,
    ) -> None:
        self.tokenizer = tokenizer
        self.num_examine = num_examine
        self.reward_fn_key = reward_fn_key
        self.base_url = base_url
        self.mode = mode
        self.options = dict(options) if options else None
        self.use_ground_truth = use_ground_truth
        self.null_score = null_score
        self.max_groups_per_request = max_groups_per_request
        self.max_concurrent_requests = max_concurrent_requests
        self.client_kwargs = client_kwargs

    def __call__(self, data: Any, return_dict: bool = False) -> Any:
        import torch

        if "rm_scores" in data.batch.keys():
            scores = data.batch["rm_scores"]
            return {"reward_tensor": scores, "reward_extra_info": {}} if return_dict else scores

        n = len(data)
        uids = [str(u) for u in data.non_tensor_batch["uid"]]
        prompts: list[Any] = []
        responses: list[str] = []
        last_token: list[int] = []
        for i in range(n):
            item = data[i]
            prompt_ids = item.batch["prompts"]
            prompt_length = prompt_ids.shape[-1]
            mask = item.batch["attention_mask"]
            valid_prompt = int(mask[:prompt_length].sum())
            valid_response = int(mask[prompt_length:].sum())
            messages = _messages(item.non_tensor_batch.get("raw_prompt"))
            prompts.append(
                messages or self.tokenizer.decode(prompt_ids[prompt_length - valid_prompt :], skip_special_tokens=True)
            )
            responses.append(self.tokenizer.decode(item.batch["responses"][:valid_response], skip_special_tokens=True))
            last_token.append(max(valid_response - 1, 0))

        members: dict[str, list[int]] = {}
        for i, uid in enumerate(uids):
            members.setdefault(uid, []).append(i)
        groups = list(members.items())
        ground_truths = [
            (data[i].non_tensor_batch.get("reward_model") or {}).get("ground_truth") for i in range(n)
        ] if self.use_ground_truth else [None] * n

        rewards: list[float | None] = [None] * n
        errors: list[str | None] = [None] * n
        size = self.max_groups_per_request
        chunks = [groups[start : start + size] for start in range(0, len(groups), size)]

        def score(client: CatRewardClient, chunk: list[tuple[str, list[int]]]) -> None:
            request = [
                RewardGroup(
                    prompts[idx[0]],
                    [responses[i] for i in idx],
                    mode=self.mode,
                    reference=None if ground_truths[idx[0]] in (None, "") else str(ground_truths[idx[0]]),
                    options=self.options,
                    metadata={"group_id": uid, "tags": {"trainer": "verl"}},
                )
                for uid, idx in chunk
            ]
            batch = client.rewards_batch(request)
            for (uid, idx), item in zip(chunk, batch):
                if not item.ok or item.result is None:
                    message = f"{item.error.type}: {item.error.message}" if item.error else "group failed"
                    for i in idx:
                        errors[i] = message
                    continue
                for i, reward, detail in zip(idx, item.result.rewards, item.result.details):
                    rewards[i] = reward
                    errors[i] = detail.error

        with CatRewardClient(service_url(self.base_url), **self.client_kwargs) as client:
            # The step's groups go out at once (a step is a burst: the service's judge pool
            # absorbs it), in max_concurrent_requests requests at a time; one client, its
            # connection pool shared by the threads.
            with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrent_requests, len(chunks)))) as pool:
                for done in [pool.submit(score, client, chunk) for chunk in chunks]:
                    done.result()

        missing = [i for i, r in enumerate(rewards) if r is None]
        if missing and self.null_score is None:
            i = missing[0]
            raise RewardUnavailable(
                f"{len(missing)} of {n} CaT rewards could not be computed (first: sample {i}, group {uids[i]}: "
                f"{errors[i] or 'no reason given'})"
            )
        reward_tensor = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
        scores = [self.null_score if r is None else r for r in rewards]
        for i, score in enumerate(scores):
            reward_tensor[i, last_token[i]] = float(score)
        if not return_dict:
            return reward_tensor
        return {
            "reward_tensor": reward_tensor,
            "reward_extra_info": {"cat_null": [1.0 if r is None else 0.0 for r in rewards]},
        }
