"""Training runs have a compute budget and count the seconds their trials spent.

Runs written before this revision get ``budget_seconds = 0`` (no budget: the trial count ends
them, as before) and ``spent_seconds = 0``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(
            sa.Column("budget_seconds", sa.Double(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("spent_seconds", sa.Double(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("spent_seconds")
        batch.drop_column("budget_seconds")
