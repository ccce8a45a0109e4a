"""Setup changes: who changed a course's setup (categories, links, switches, fixes), when, and what.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "setup_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
        sa.Column("destination_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
        sa.Column("course_id", sa.String(200), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Index("ix_setup_changes_course", "source_connection_id", "course_id"),
    )


def downgrade() -> None:
    op.drop_table("setup_changes")
