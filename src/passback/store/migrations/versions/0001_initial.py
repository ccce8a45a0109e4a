"""Initial schema: connections, identity map, runs, run items, audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("base_url", sa.String(500), nullable=False),
        sa.Column("credentials", sa.Text, nullable=False),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_connections"),
        sa.UniqueConstraint("name", name="uq_connections_name"),
    )
    op.create_table(
        "identity_map",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_connection_id", sa.Integer, nullable=False),
        sa.Column("destination_connection_id", sa.Integer, nullable=False),
        sa.Column("object_kind", sa.String(30), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("dest_id", sa.String(200), nullable=True),
        sa.Column("natural_key", sa.JSON, nullable=True),
        sa.Column("value_hash", sa.String(64), nullable=True),
        sa.Column("value", sa.JSON, nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identity_map"),
        sa.ForeignKeyConstraint(
            ["source_connection_id"],
            ["connections.id"],
            name="fk_identity_map_source_connection_id_connections",
        ),
        sa.ForeignKeyConstraint(
            ["destination_connection_id"],
            ["connections.id"],
            name="fk_identity_map_destination_connection_id_connections",
        ),
        sa.UniqueConstraint(
            "source_connection_id",
            "destination_connection_id",
            "object_kind",
            "source_id",
            name="uq_identity_map_key",
        ),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("source_connection_id", sa.Integer, nullable=False),
        sa.Column("destination_connection_id", sa.Integer, nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("scope", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("stats", sa.JSON, nullable=False),
        sa.Column("failure", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["source_connection_id"],
            ["connections.id"],
            name="fk_runs_source_connection_id_connections",
        ),
        sa.ForeignKeyConstraint(
            ["destination_connection_id"],
            ["connections.id"],
            name="fk_runs_destination_connection_id_connections",
        ),
    )
    op.create_table(
        "run_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("object_kind", sa.String(30), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("dest_id", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("code", sa.String(60), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("context", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_run_items"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_items_run_id_runs"),
    )
    op.create_index("ix_run_items_run_id", "run_items", ["run_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destination_connection_id", sa.Integer, nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("source_assignment_id", sa.String(200), nullable=False),
        sa.Column("source_student_id", sa.String(200), nullable=False),
        sa.Column("dest_assignment_id", sa.String(200), nullable=True),
        sa.Column("dest_student_id", sa.String(200), nullable=True),
        sa.Column("old_value", sa.JSON, nullable=True),
        sa.Column("new_value", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_audit_log_run_id_runs"),
        sa.ForeignKeyConstraint(
            ["destination_connection_id"],
            ["connections.id"],
            name="fk_audit_log_destination_connection_id_connections",
        ),
    )
    op.create_index("ix_audit_log_run_id", "audit_log", ["run_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("run_items")
    op.drop_table("runs")
    op.drop_table("identity_map")
    op.drop_table("connections")
