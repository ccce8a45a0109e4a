"""Setup state: category mappings per course, and sync switches kept by passback.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "category_mappings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_connection_id", sa.Integer, nullable=False),
        sa.Column("destination_connection_id", sa.Integer, nullable=False),
        sa.Column("course_id", sa.String(200), nullable=False),
        sa.Column("source_category_id", sa.String(200), nullable=False),
        sa.Column("source_category_name", sa.String(300), nullable=False),
        sa.Column("dest_category_id", sa.String(200), nullable=False),
        sa.Column("dest_category_name", sa.String(300), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_category_mappings"),
        sa.ForeignKeyConstraint(
            ["source_connection_id"], ["connections.id"],
            name="fk_category_mappings_source_connection_id_connections",
        ),
        sa.ForeignKeyConstraint(
            ["destination_connection_id"], ["connections.id"],
            name="fk_category_mappings_destination_connection_id_connections",
        ),
        sa.UniqueConstraint(
            "source_connection_id", "destination_connection_id", "course_id", "source_category_id",
            name="uq_category_mappings_key",
        ),
    )
    op.create_table(
        "assignment_switches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_connection_id", sa.Integer, nullable=False),
        sa.Column("course_id", sa.String(200), nullable=False),
        sa.Column("assignment_id", sa.String(200), nullable=False),
        sa.Column("sync", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_assignment_switches"),
        sa.ForeignKeyConstraint(
            ["source_connection_id"], ["connections.id"],
            name="fk_assignment_switches_source_connection_id_connections",
        ),
        sa.UniqueConstraint(
            "source_connection_id", "course_id", "assignment_id", name="uq_assignment_switches_key"
        ),
    )


def downgrade() -> None:
    op.drop_table("assignment_switches")
    op.drop_table("category_mappings")
