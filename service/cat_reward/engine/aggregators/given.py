"""The caller supplies the reference (a gold answer, an expert response)."""

from __future__ import annotations

from ..context import GroupContext
from ..errors import InvalidGroup
from ..types import Reference


async def given_reference(ctx: GroupContext) -> Reference:
    reference = ctx.group.reference
    if reference is None or not reference.strip():
        raise InvalidGroup("aggregator 'given' needs a non-empty 'reference'", param="reference")
    return Reference(text=reference, aggregator="given")
