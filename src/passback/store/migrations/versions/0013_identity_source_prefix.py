"""An index for reading a course's identity rows by the prefix of their source ids, on PostgreSQL.

Its default collations cannot serve ``LIKE 'prefix%'`` from the unique key, so every course's
load read all of its pairing's rows; SQLite reads the prefix as a range on the unique key.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_identity_map_source_prefix", "identity_map",
                        ["source_connection_id", "destination_connection_id", "object_kind", "source_id"],
                        postgresql_ops={"source_id": "varchar_pattern_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_identity_map_source_prefix", table_name="identity_map")
