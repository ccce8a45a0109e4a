"""Matching: per connection pair, how sections, students and categories match, and overrides by hand.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "match_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_connection_id", sa.Integer, nullable=False),
        sa.Column("destination_connection_id", sa.Integer, nullable=False),
        sa.Column("object_kind", sa.String(30), nullable=False),
        sa.Column("source_field", sa.String(40), nullable=False),
        sa.Column("dest_field", sa.String(40), nullable=False),
        sa.Column("pattern", sa.String(500), nullable=True),
        sa.Column("strip_prefix", sa.String(200), nullable=False),
        sa.Column("strip_suffix", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_match_rules"),
        sa.ForeignKeyConstraint(
            ["source_connection_id"], ["connections.id"],
            name="fk_match_rules_source_connection_id_connections",
        ),
        sa.ForeignKeyConstraint(
            ["destination_connection_id"], ["connections.id"],
            name="fk_match_rules_destination_connection_id_connections",
        ),
        sa.UniqueConstraint(
            "source_connection_id", "destination_connection_id", "object_kind", name="uq_match_rules_key"
        ),
    )
    op.create_table(
        "match_overrides",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_connection_id", sa.Integer, nullable=False),
        sa.Column("destination_connection_id", sa.Integer, nullable=False),
        sa.Column("object_kind", sa.String(30), nullable=False),
        sa.Column("course_id", sa.String(200), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("source_name", sa.String(300), nullable=True),
        sa.Column("dest_id", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_match_overrides"),
        sa.ForeignKeyConstraint(
            ["source_connection_id"], ["connections.id"],
            name="fk_match_overrides_source_connection_id_connections",
        ),
        sa.ForeignKeyConstraint(
            ["destination_connection_id"], ["connections.id"],
            name="fk_match_overrides_destination_connection_id_connections",
        ),
        sa.UniqueConstraint(
            "source_connection_id", "destination_connection_id", "object_kind", "course_id", "source_id",
            name="uq_match_overrides_key",
        ),
    )


def downgrade() -> None:
    op.drop_table("match_overrides")
    op.drop_table("match_rules")
