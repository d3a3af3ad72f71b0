"""Reference estimation: turn a group's rollouts into one pseudo-reference.

CaT's own aggregator is ``synthesis``; the framework admits others, registered here by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..context import GroupContext
from ..types import Reference
from .given import given_reference
from .majority import majority_vote
from .scrl import scrl_labels
from .synthesis import synthesize_reference

Aggregator = Callable[[GroupContext], Awaitable[Reference]]

AGGREGATORS: dict[str, Aggregator] = {
    "synthesis": synthesize_reference,
    "majority": majority_vote,
    "given": given_reference,
    "scrl": scrl_labels,
}

__all__ = ["AGGREGATORS", "Aggregator", "given_reference", "majority_vote", "scrl_labels", "synthesize_reference"]
