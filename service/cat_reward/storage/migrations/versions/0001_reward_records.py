"""reward_records: one row per scored group.

Written out in full rather than derived from ``schema.py``, as migrations must stay what they were
when the schema moves on.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reward_records",
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
    )
    op.create_index("ix_reward_records_created_at", "reward_records", ["created_at", "id"])
    op.create_index("ix_reward_records_prompt_hash", "reward_records", ["prompt_hash", "created_at", "id"])
    op.create_index("ix_reward_records_run_id", "reward_records", ["run_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("reward_records")
