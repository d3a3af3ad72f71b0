"""``cat-reward eval``: does synthesis beat a single sample and majority vote on your data?

An application layer beside ``rewarding``: it samples G rollouts per item from a policy endpoint
and scores them with the service's own pipeline, in process (``wiring.open_services``).

    datasets  MATH-500- and HealthBench-form items: JSONL path, builtin fixtures, hf:<name>
    policy    G rollouts per prompt from an OpenAI-compatible chat endpoint
    scoring   single sample, majority vote and synthesis through ``RewardService.score``
    report    summary per G, Markdown table, JSON, PNG plot
    runner    the whole run;  command: the CLI subcommand
"""

from .datasets import Dataset, DatasetError, HealthItem, MathItem, RubricCriterion, load_dataset
from .policy import Completion, PolicyClient, PolicyError

__all__ = [
    "Completion",
    "Dataset",
    "DatasetError",
    "HealthItem",
    "MathItem",
    "PolicyClient",
    "PolicyError",
    "RubricCriterion",
    "load_dataset",
]
