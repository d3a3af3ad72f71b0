"""The ``reward_records`` table as the store queries it (the migrations create it; a test checks
that both agree).

Strings are unbounded (``VARCHAR`` without length) so that no id or model name can be too long to
insert, which would block the outbox. ``request``/``result`` use the portable JSON type, which on
PostgreSQL is ``json`` (kept verbatim) rather than ``jsonb`` (which rejects ``\\u0000``).
The indexes lead with the filter column and end with the sort key, so a filtered, keyset-paginated
``list`` is one index range scan.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

reward_records = sa.Table(
    "reward_records",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("prompt_hash", sa.String(), nullable=False),
    sa.Column("mode", sa.String(), nullable=False),
    sa.Column("run_id", sa.String(), nullable=True),
    sa.Column("step", sa.BigInteger(), nullable=True),
    sa.Column("group_id", sa.String(), nullable=True),
    sa.Column("anchor_model", sa.String(), nullable=False),
    sa.Column("judge_model", sa.String(), nullable=False),
    sa.Column("prompt_version", sa.String(), nullable=False),
    sa.Column("request", sa.JSON(), nullable=False),
    sa.Column("result", sa.JSON(), nullable=False),
    sa.Index("ix_reward_records_created_at", "created_at", "id"),
    sa.Index("ix_reward_records_prompt_hash", "prompt_hash", "created_at", "id"),
    sa.Index("ix_reward_records_run_id", "run_id", "created_at", "id"),
    sa.Index("ix_reward_records_run_step", "run_id", "step", "created_at", "id"),
)
