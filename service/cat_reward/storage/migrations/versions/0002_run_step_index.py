"""An index for a run's records in step order (the dashboard's rewards-over-steps plot and the
``step`` filter), so neither sorts the run's rows.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_reward_records_run_step", "reward_records", ["run_id", "step", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_reward_records_run_step", table_name="reward_records")
