"""Runs as requests: which pipeline, and the request itself, so a queued run can be executed anywhere.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("pipeline", sa.String(30), nullable=False, server_default="gradebook"))
        batch.add_column(sa.Column("request", sa.JSON, nullable=True))
    op.create_index("ix_runs_status", "runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_runs_status", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("request")
        batch.drop_column("pipeline")
