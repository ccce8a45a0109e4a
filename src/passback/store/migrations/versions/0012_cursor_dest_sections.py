"""The destination sections a course's last run read, kept with its cursor: the next run reads them
while it reads the source, instead of after.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("source_cursors") as batch:
        batch.add_column(sa.Column("dest_sections", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("source_cursors") as batch:
        batch.drop_column("dest_sections")
