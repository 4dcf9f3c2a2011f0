"""Trials store the named metrics of their report and the machine they were measured on.

A report may carry named metrics (``ReportTrialRequest.metrics``: e.g. ``latency_ms``, the
median ONNX Runtime latency at batch 1 that the training worker measures for a Pareto search)
and the machine that measured them. Rows written before this revision have none: ``metrics``
NULL, ``measured_on`` "". A search's objectives and latency constraint live in its JSON config,
which needs no schema change (keys an older version does not know are ignored when read).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("metrics", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("measured_on", sa.String(200), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("measured_on")
        batch.drop_column("metrics")
