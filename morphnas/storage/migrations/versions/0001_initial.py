"""Initial schema: searches, trials, trial weights, staged weights, measurements.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "searches",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("size_cap_params", sa.BigInteger(), nullable=False),
        sa.Column("trial_count", sa.Integer(), nullable=False),
        sa.Column("stopped", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_searches"),
    )
    op.create_index("ix_searches_created_at_id", "searches", ["created_at", "id"])

    op.create_table(
        "trials",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("search_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("architecture", sa.Text(), nullable=False),
        sa.Column("arch_hash", sa.String(128), nullable=False),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("operations", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("worker_id", sa.String(256), nullable=False),
        sa.Column("lease_expires_at", sa.Double(), nullable=True),
        sa.Column("lease_seconds", sa.Double(), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("reissue_of", sa.String(32), nullable=True),
        sa.Column("reissued_as", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["search_id"],
            ["searches.id"],
            name="fk_trials_search_id_searches",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trials"),
        sa.UniqueConstraint("search_id", "number", name="uq_trials_search_id_number"),
    )
    op.create_index("ix_trials_search_id_state_number", "trials", ["search_id", "state", "number"])
    op.create_index(
        "ix_trials_search_id_number_state_id", "trials", ["search_id", "number", "state", "id"]
    )
    op.create_index("ix_trials_state_lease_expires_at", "trials", ["state", "lease_expires_at"])

    op.create_table(
        "trial_weights",
        sa.Column("trial_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name="fk_trial_weights_trial_id_trials",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", "kind", name="pk_trial_weights"),
    )

    op.create_table(
        "staged_weights",
        sa.Column("trial_id", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name="fk_staged_weights_trial_id_trials",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", "sha256", name="pk_staged_weights"),
    )

    op.create_table(
        "measurements",
        sa.Column("trial_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["trial_id"],
            ["trials.id"],
            name="fk_measurements_trial_id_trials",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("trial_id", "name", "step", name="pk_measurements"),
    )


def downgrade() -> None:
    op.drop_table("measurements")
    op.drop_table("staged_weights")
    op.drop_table("trial_weights")
    op.drop_index("ix_trials_state_lease_expires_at", table_name="trials")
    op.drop_index("ix_trials_search_id_number_state_id", table_name="trials")
    op.drop_index("ix_trials_search_id_state_number", table_name="trials")
    op.drop_table("trials")
    op.drop_index("ix_searches_created_at_id", table_name="searches")
    op.drop_table("searches")
