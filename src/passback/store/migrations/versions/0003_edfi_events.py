"""The Ed-Fi event queue: posted grades changed, deleted, or a mapping changed.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edfi_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("destination_connection_id", sa.Integer, nullable=False),
        sa.Column("posted_id", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(30), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_edfi_events"),
        sa.ForeignKeyConstraint(
            ["destination_connection_id"], ["connections.id"],
            name="fk_edfi_events_destination_connection_id_connections",
        ),
    )
    op.create_index("ix_edfi_events_pending", "edfi_events", ["destination_connection_id", "processed_at"])


def downgrade() -> None:
    op.drop_table("edfi_events")
