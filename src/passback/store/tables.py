"""Table definitions (SQLAlchemy Core), shared by the repositories and the migrations.

Core rather than the ORM: the hot path writes identity rows and run items in
batches, and Core's executemany is the cheapest way to do that on both dialects.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

connections = sa.Table(
    "connections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("base_url", sa.String(500), nullable=False),
    sa.Column("credentials", sa.Text, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

identity_map = sa.Table(
    "identity_map",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
    sa.Column(
        "destination_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False
    ),
    sa.Column("object_kind", sa.String(30), nullable=False),
    sa.Column("source_id", sa.String(200), nullable=False),
    sa.Column("dest_id", sa.String(200), nullable=True),
    sa.Column("natural_key", sa.JSON, nullable=True),
    sa.Column("value_hash", sa.String(64), nullable=True),
    sa.Column("value", sa.JSON, nullable=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint(
        "source_connection_id",
        "destination_connection_id",
        "object_kind",
        "source_id",
        name="uq_identity_map_key",
    ),
)
# A course's rows are read by the prefix of their source ids ("course:..."). PostgreSQL can use an
# index for LIKE 'prefix%' only in the C locale, or with pattern operators: without this index, each
# course's load read every row of its pairing (a district's 240,000). SQLite reads the prefix as a
# range on the unique key above.
sa.Index("ix_identity_map_source_prefix", identity_map.c.source_connection_id,
         identity_map.c.destination_connection_id, identity_map.c.object_kind, identity_map.c.source_id,
         postgresql_ops={"source_id": "varchar_pattern_ops"}).ddl_if(dialect="postgresql")

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
    sa.Column(
        "destination_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False
    ),
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
    sa.Column("pipeline", sa.String(30), nullable=False, server_default="gradebook"),
    sa.Column("request", sa.JSON, nullable=True),
    sa.Column("course_id", sa.String(200), nullable=True),  # the scope's course: a course's page lists its runs
    sa.Column("parent_run_id", sa.String(36), nullable=True),  # one run to several destinations: its part runs
    sa.Index("ix_runs_status", "status"),
    sa.Index("ix_runs_course", "source_connection_id", "course_id"),
    sa.Index("ix_runs_parent", "parent_run_id"),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("holder", sa.String(36), nullable=False),
    sa.Column("run_id", sa.String(36), nullable=True),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

run_items = sa.Table(
    "run_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("object_kind", sa.String(30), nullable=False),
    sa.Column("source_id", sa.String(200), nullable=False),
    sa.Column("dest_id", sa.String(200), nullable=True),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("code", sa.String(60), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("context", sa.JSON, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column(
        "destination_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False
    ),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("source_assignment_id", sa.String(200), nullable=False),
    sa.Column("source_student_id", sa.String(200), nullable=False),
    sa.Column("dest_assignment_id", sa.String(200), nullable=True),
    sa.Column("dest_student_id", sa.String(200), nullable=True),
    sa.Column("old_value", sa.JSON, nullable=True),
    sa.Column("new_value", sa.JSON, nullable=True),
    sa.Column("answer", sa.String(200), nullable=True),  # the destination's answer to the write
)

category_mappings = sa.Table(
    "category_mappings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
    sa.Column(
        "destination_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False
    ),
    sa.Column("course_id", sa.String(200), nullable=False),
    sa.Column("source_category_id", sa.String(200), nullable=False),
    sa.Column("source_category_name", sa.String(300), nullable=False),
    sa.Column("dest_category_id", sa.String(200), nullable=False),
    sa.Column("dest_category_name", sa.String(300), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint(
        "source_connection_id",
        "destination_connection_id",
        "course_id",
        "source_category_id",
        name="uq_category_mappings_key",
    ),
)

assignment_switches = sa.Table(
    "assignment_switches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
    sa.Column("course_id", sa.String(200), nullable=False),
    sa.Column("assignment_id", sa.String(200), nullable=False),
    sa.Column("sync", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint(
        "source_connection_id", "course_id", "assignment_id", name="uq_assignment_switches_key"
    ),
)

edfi_events = sa.Table(
    "edfi_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "destination_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False
    ),
    sa.Column("posted_id", sa.String(300), nullable=False),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("outcome", sa.String(30), nullable=True),
    sa.Index("ix_edfi_events_pending", "destination_connection_id", "processed_at"),
)

live_events = sa.Table(  # Canvas Live Events received (store/live_events.py): what changed, waiting to be synced
    "live_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
    sa.Column("course_id", sa.String(200), nullable=False),
    sa.Column("event_name", sa.String(60), nullable=False),
    sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),  # when Canvas says it happened
    sa.Column("dedupe_key", sa.String(64), nullable=False),  # sha256 of the event's identity (a redelivery is the same)
    sa.Column("assignment_id", sa.String(200), nullable=True),
    sa.Column("detail", sa.JSON, nullable=False),  # the few ids passback acts on; never the whole event
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),  # a coalescer is dispatching it
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("outcome", sa.String(200), nullable=True),
    sa.UniqueConstraint("source_connection_id", "dedupe_key", name="uq_live_events_key"),
    sa.Index("ix_live_events_pending", "processed_at", "source_connection_id", "course_id"),
)

match_rules = sa.Table(
    "match_rules",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
    sa.Column(
        "destination_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False
    ),
    sa.Column("object_kind", sa.String(30), nullable=False),
    sa.Column("source_field", sa.String(40), nullable=False),
    sa.Column("dest_field", sa.String(40), nullable=False),
    sa.Column("pattern", sa.String(500), nullable=True),
    sa.Column("strip_prefix", sa.String(200), nullable=False),
    sa.Column("strip_suffix", sa.String(200), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint(
        "source_connection_id", "destination_connection_id", "object_kind", name="uq_match_rules_key"
    ),
)

match_overrides = sa.Table(
    "match_overrides",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
    sa.Column(
        "destination_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False
    ),
    sa.Column("object_kind", sa.String(30), nullable=False),
    sa.Column("course_id", sa.String(200), nullable=False),  # "" for a pair-wide override (students)
    sa.Column("source_id", sa.String(200), nullable=False),
    sa.Column("source_name", sa.String(300), nullable=True),
    sa.Column("dest_id", sa.String(200), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint(
        "source_connection_id",
        "destination_connection_id",
        "object_kind",
        "course_id",
        "source_id",
        name="uq_match_overrides_key",
    ),
)

setup_changes = sa.Table(
    "setup_changes",
    metadata,
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

# --- the web product (issue: the teacher's product) -------------------------------------------

users = sa.Table(
    "users",
    metadata,
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

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 of the token; the token is shown once
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

course_access = sa.Table(
    "course_access",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), nullable=False),
    sa.Column("course_id", sa.String(200), nullable=False),
    sa.Column("role", sa.String(40), nullable=False),  # Instructor, TeachingAssistant, Administrator, Learner
    sa.Column("granted_by", sa.String(100), nullable=False),  # "lti" or the admin who assigned it
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("user_id", "source_connection_id", "course_id", name="uq_course_access_key"),
)

lti_platforms = sa.Table(
    "lti_platforms",
    metadata,
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

lti_launch_states = sa.Table(  # OIDC login initiation: state and nonce, each used once
    "lti_launch_states",
    metadata,
    sa.Column("state", sa.String(100), primary_key=True),
    sa.Column("nonce", sa.String(100), nullable=False, unique=True),
    sa.Column("platform_id", sa.Integer, sa.ForeignKey("lti_platforms.id"), nullable=False),
    sa.Column("target_link_uri", sa.String(1000), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
)

tool_keys = sa.Table(  # passback's own signing keys as an LTI tool (private part encrypted at rest)
    "tool_keys",
    metadata,
    sa.Column("kid", sa.String(100), primary_key=True),
    sa.Column("private_key", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
)

district_settings = sa.Table(
    "district_settings",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

course_schedules = sa.Table(
    "course_schedules",
    metadata,
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

course_names = sa.Table(  # a course's title as last seen (a launch, a preview): pages name courses without a read
    "course_names",
    metadata,
    sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), primary_key=True),
    sa.Column("course_id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

source_cursors = sa.Table(  # where a route's last read of a course got to (an incremental cursor), per destination
    "source_cursors",
    metadata,
    sa.Column("source_connection_id", sa.Integer, sa.ForeignKey("connections.id"), primary_key=True),
    sa.Column("destination_connection_id", sa.Integer, sa.ForeignKey("connections.id"), primary_key=True),
    sa.Column("course_id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),  # the source's declared cursor
    sa.Column("last_value", sa.DateTime(timezone=True), nullable=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),  # sections and rosters as last read
    sa.Column("full_at", sa.DateTime(timezone=True), nullable=False),  # the last full read (reconciliation)
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("dest_sections", sa.JSON, nullable=True),  # the destination sections the last run read, in order
)
