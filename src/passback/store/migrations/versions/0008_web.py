"""The web product: each run's course and the destination's answer in the audit log; users, API tokens,
course access, LTI platforms, launch states, tool keys, district settings, course schedules and course names.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("course_id", sa.String(200), nullable=True))
        batch.create_index("ix_runs_course", ["source_connection_id", "course_id"])
    _backfill_run_courses()
    _course_names()
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(200), nullable=False, unique=True),
        sa.Column("display_name", sa.String(300), nullable=False),
        sa.Column("password_hash", sa.String(300), nullable=True),  # argon2; none for users who only launch over LTI
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("lti_issuer", sa.String(500), nullable=True),
        sa.Column("lti_subject", sa.String(300), nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("lti_issuer", "lti_subject", name="uq_users_lti"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 of the token; the token is shown once
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "course_access",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
        sa.Column("course_id", sa.String(200), nullable=False),
        sa.Column("role", sa.String(40), nullable=False),  # Instructor, TeachingAssistant, Administrator, Learner
        sa.Column("granted_by", sa.String(100), nullable=False),  # "lti" or the admin who assigned it
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", "source_connection_id", "course_id", name="uq_course_access_key"),
    )
    op.create_table(
        "lti_platforms",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=False),
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("auth_login_url", sa.String(500), nullable=False),
        sa.Column("auth_token_url", sa.String(500), nullable=False),
        sa.Column("jwks_url", sa.String(500), nullable=False),
        sa.Column("deployment_ids", sa.JSON, nullable=False),
        sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("issuer", "client_id", name="uq_lti_platforms_key"),
    )
    op.create_table(
        "district_settings",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "course_schedules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
        sa.Column("destination_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
        sa.Column("course_id", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),  # nightly, manual
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_id", sa.String(36), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source_connection_id", "destination_connection_id", "course_id",
                            name="uq_course_schedules_key"),
        sa.Index("ix_course_schedules_due", "mode", "next_run_at"),
    )
    op.create_table(
        "lti_launch_states",
        sa.Column("state", sa.String(100), primary_key=True),
        sa.Column("nonce", sa.String(100), nullable=False, unique=True),
        sa.Column("platform_id", sa.Integer, sa.ForeignKey("lti_platforms.id"), nullable=False),
        sa.Column("target_link_uri", sa.String(1000), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "tool_keys",
        sa.Column("kid", sa.String(100), primary_key=True),
        sa.Column("private_key", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("answer", sa.String(200), nullable=True))


def _course_names() -> None:
    op.create_table(
        "course_names",
        sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), primary_key=True),
        sa.Column("course_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def _backfill_run_courses() -> None:
    """Runs stored before this revision name their course in the scope only."""
    bind = op.get_bind()
    runs = sa.table("runs", sa.column("id", sa.String), sa.column("scope", sa.JSON), sa.column("course_id", sa.String))
    for run_id, scope in bind.execute(sa.select(runs.c.id, runs.c.scope)).all():
        course = (scope or {}).get("course_id") if isinstance(scope, dict) else None
        if course is not None:
            bind.execute(runs.update().where(runs.c.id == run_id).values(course_id=str(course)))


def downgrade() -> None:
    op.drop_table("course_names")
    op.drop_table("tool_keys")
    op.drop_table("lti_launch_states")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_course")
        batch.drop_column("course_id")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("answer")
    op.drop_table("course_schedules")
    op.drop_table("district_settings")
    op.drop_table("lti_platforms")
    op.drop_table("course_access")
    op.drop_table("api_tokens")
    op.drop_table("users")
