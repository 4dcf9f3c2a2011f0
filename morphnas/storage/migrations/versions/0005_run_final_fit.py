"""Training runs say whether they end with a final fit of the best architecture.

Runs written before this revision get ``final_fit = 'none'`` (they had none), no
``final_test_accuracy`` and ``reserved_seconds = 0`` (no budget held back). The final fit's
weights are stored in ``trial_weights`` with kind ``'final'``: the kind column is free text
(String(16)), so it needs no schema change.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(
            sa.Column("final_fit", sa.String(16), nullable=False, server_default="none")
        )
        batch.add_column(sa.Column("final_test_accuracy", sa.Double(), nullable=True))
        batch.add_column(
            sa.Column("reserved_seconds", sa.Double(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    op.execute("DELETE FROM trial_weights WHERE kind = 'final'")
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("reserved_seconds")
        batch.drop_column("final_test_accuracy")
        batch.drop_column("final_fit")
