"""The summary of an output file of ``cat-reward score``: counts, the reward histogram, the share
of zero-variance groups, and the flag kinds (group flags, and rollout flags such as
``injection:*``). Read from the file, so it covers every run that wrote to it."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

BINS = 10  # rewards in [0, 1], ten bins; the last one includes 1.0


def summarize(out: Path) -> dict:
    groups = rollouts = null_rewards = zero_variance = complete_groups = 0
    histogram = [0] * BINS
    outside = Counter()  # rewards outside [0, 1], should a mode produce them
    total = 0.0
    counted = 0
    group_flags: Counter[str] = Counter()
    rollout_flags: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    path = Path(out)
    if path.exists():
        with path.open("rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    continue  # a torn last line of a run still going or killed
                entry = json.loads(raw)
                groups += 1
                modes[str(entry.get("mode"))] += 1
                rewards = entry.get("rewards") or []
                rollouts += len(rewards)
                nulls = sum(r is None for r in rewards)
                null_rewards += nulls
                complete_groups += nulls == 0
                if entry.get("zero_variance"):
                    zero_variance += 1
                for reward in rewards:
                    if reward is None or (isinstance(reward, float) and math.isnan(reward)):
                        continue
                    total += reward
                    counted += 1
                    if reward < 0:
                        outside["below_0"] += 1
                    elif reward > 1:
                        outside["above_1"] += 1
                    else:
                        histogram[min(int(reward * BINS), BINS - 1)] += 1
                group_flags.update(entry.get("flags") or [])
                for flags in entry.get("rollout_flags") or []:
                    rollout_flags.update(flags)
                for error in entry.get("errors") or []:
                    if error:
                        errors[error.split(":", 1)[0]] += 1
    return {
        "groups": groups,
        "complete_groups": complete_groups,
        "rollouts": rollouts,
        "null_rewards": null_rewards,
        "null_reward_reasons": dict(errors.most_common()),
        "reward_mean": round(total / counted, 4) if counted else None,
        "histogram": {
            "edges": [round(i / BINS, 2) for i in range(BINS + 1)],
            "counts": histogram,
            **({"outside_0_1": dict(outside)} if outside else {}),
        },
        "zero_variance_groups": zero_variance,
        "zero_variance_share": round(zero_variance / groups, 4) if groups else None,
        "group_flags": dict(group_flags.most_common()),
        "rollout_flags": dict(rollout_flags.most_common()),
        "modes": dict(modes),
    }


def render(run: dict, output: dict, still_failed: int, bad_rows: int) -> str:
    """The text summary printed at the end of a run."""
    lines = [
        "== cat-reward score ==",
        f"this run: {run['rows']} rows read, {run['scored']} groups scored, {run['failed']} failed, "
        f"{run['bad_rows']} bad rows, {run['already_done']} already done, {run['duplicates']} duplicates, "
        f"{run['earlier_failures']} earlier failures not retried, {run['retries']} retries"
        + (f", {run['groups_per_s']} groups/s" if run.get("groups_per_s") else ""),
        f"output: {output['groups']} groups ({output['complete_groups']} with every reward), {output['rollouts']} rollouts, "
        f"{output['null_rewards']} null rewards"
        + (f" ({', '.join(f'{k}: {v}' for k, v in output['null_reward_reasons'].items())})" if output["null_reward_reasons"] else ""),
        f"failed groups (failures file): {still_failed}; bad rows: {bad_rows}",
        f"reward mean: {output['reward_mean']}; zero-variance groups: {output['zero_variance_groups']}"
        + (f" ({100 * output['zero_variance_share']:.1f}%)" if output["zero_variance_share"] is not None else ""),
        "reward histogram:",
    ]
    counts = output["histogram"]["counts"]
    edges = output["histogram"]["edges"]
    widest = max(counts) if counts and max(counts) else 1
    for i, count in enumerate(counts):
        close = "]" if i == len(counts) - 1 else ")"
        lines.append(f"  [{edges[i]:.1f}, {edges[i + 1]:.1f}{close} {count:>8} {'#' * round(40 * count / widest)}")
    for name, value in output["histogram"].get("outside_0_1", {}).items():
        lines.append(f"  {name}: {value}")
    flags = output["group_flags"]
    lines.append("group flags: " + (", ".join(f"{k}: {v}" for k, v in flags.items()) if flags else "none"))
    flags = output["rollout_flags"]
    lines.append("rollout flags: " + (", ".join(f"{k}: {v}" for k, v in flags.items()) if flags else "none"))
    return "\n".join(lines)
