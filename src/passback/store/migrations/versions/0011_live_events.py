"""Canvas Live Events received: a durable, de-duplicated log of change events waiting to be synced.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "live_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_connection_id", sa.Integer, nullable=False),
        sa.Column("course_id", sa.String(200), nullable=False),
        sa.Column("event_name", sa.String(60), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("assignment_id", sa.String(200), nullable=True),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_live_events"),
        sa.ForeignKeyConstraint(["source_connection_id"], ["connections.id"],
                                name="fk_live_events_source_connection_id_connections"),
        sa.UniqueConstraint("source_connection_id", "dedupe_key", name="uq_live_events_key"),
    )
    op.create_index("ix_live_events_pending", "live_events", ["processed_at", "source_connection_id", "course_id"])


def downgrade() -> None:
    op.drop_table("live_events")
