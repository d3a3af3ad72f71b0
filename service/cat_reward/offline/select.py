"""``cat-reward select``: rollouts picked from an output of ``cat-reward score``, as SFT data,
without another judge call (so another threshold costs nothing but a read of the file).

    --min-reward X   keep rollouts whose reward is at least X
    --keep-top K     keep the K best rollouts of each prompt (over every group of that prompt)

A rollout without a reward (null: it could not be computed) is never selected. Ties keep the
earlier rollout (file order). Each output line is in TRL's prompt-completion form: ``prompt`` as
the group had it and ``completion`` (a string, or one assistant message when the prompt is chat
messages), with ``reward``, the group's ``id`` and ``key`` and the rollout's index.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Iterator
from pathlib import Path


class SelectError(Exception):
    pass


def _groups(path: Path) -> Iterator[dict]:
    if not path.exists():
        raise SelectError(f"{path} does not exist")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                continue  # a torn last line
            try:
                entry = json.loads(raw)
            except ValueError:
                raise SelectError(f"{path}: line {number} is not JSON") from None
            if not isinstance(entry, dict) or "rewards" not in entry or "rollouts" not in entry:
                raise SelectError(f"{path}: line {number} is not a line of cat-reward score's output (rewards, rollouts)")
            yield entry


def _line(entry: dict, index: int, reward: float) -> dict:
    prompt = entry["prompt"]
    text = entry["rollouts"][index]
    completion = text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]
    return {"prompt": prompt, "completion": completion, "reward": reward, "id": entry.get("id"), "key": entry["key"], "rollout_index": index}


def _prompt_key(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def select(scored: Path, out: Path, *, keep_top: int | None = None, min_reward: float | None = None) -> dict:
    """Write the selected rollouts to ``out``; the counts."""
    if keep_top is None and min_reward is None:
        raise SelectError("say what to keep: --keep-top K and/or --min-reward X")
    if keep_top is not None and keep_top < 1:
        raise SelectError("--keep-top must be at least 1")
    scored, out = Path(scored), Path(out)
    counts = {"groups": 0, "rollouts": 0, "null_rewards": 0, "below_min_reward": 0, "selected": 0}
    # keep_top: per prompt, a heap of the K best (reward, -order) seen so far; the order breaks ties.
    best: dict[str, list[tuple[float, int, dict]]] = {}
    order = 0
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w", encoding="utf-8") as handle:
        for entry in _groups(scored):
            counts["groups"] += 1
            for index, reward in enumerate(entry["rewards"]):
                counts["rollouts"] += 1
                order += 1
                if reward is None:
                    counts["null_rewards"] += 1
                    continue
                if min_reward is not None and reward < min_reward:
                    counts["below_min_reward"] += 1
                    continue
                if keep_top is None:
                    handle.write(json.dumps(_line(entry, index, reward), ensure_ascii=False) + "\n")
                    counts["selected"] += 1
                    continue
                heap = best.setdefault(_prompt_key(entry["prompt"]), [])
                item = (reward, -order, _line(entry, index, reward))
                if len(heap) < keep_top:
                    heapq.heappush(heap, item)
                elif item[:2] > heap[0][:2]:
                    heapq.heapreplace(heap, item)
        if keep_top is not None:
            for heap in best.values():
                for _, _, line in sorted(heap, key=lambda item: (-item[0], -item[1])):
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
                    counts["selected"] += 1
            counts["prompts"] = len(best)  # with --keep-top: the distinct prompts
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, out)
    return counts
