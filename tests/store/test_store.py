"""The store on SQLite and on PostgreSQL: same migrations, same behaviour."""

from __future__ import annotations

import os
import stat

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from passback.settings import Settings
from passback.store.connections import get_connection, list_connections, save_connection
from passback.store.db import Store, migrate
from passback.store.history import (
    AuditEntry,
    ItemOutcome,
    finish_run,
    get_run,
    get_run_items,
    record_audit,
    record_items,
    submit_run,
    claim_run,
)
from passback.store.identity import PENDING, IdentityRow, Pairing, delete_identities, load_identities, upsert_identities
from passback.store.tables import audit_log, connections, metadata
from passback.vault import load_key


def pairing_in(store: Store) -> Pairing:
    key = b"0" * 43 + b"="
    source = save_connection(store, key, name="lms", kind="canvas", base_url="http://lms/", credentials={"token": "t"})
    dest = save_connection(store, key, name="sis", kind="powerschool", base_url="http://sis",
                           credentials={"client_id": "c", "client_secret": "s"})
    return Pairing(source.id, dest.id)


def test_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    dialect = store.engine.dialect.name

    def declared_here(item: object, _name: object, type_: str, reflected: bool, _other: object) -> bool:
        """An index declared for one database only (``ddl_if``) is compared on that database only."""
        only = getattr(item, "_ddl_if", None)
        return reflected or only is None or only.dialect in (None, dialect)

    with store.engine.connect() as db:
        diffs = compare_metadata(MigrationContext.configure(db, opts={"include_object": declared_here}), metadata)
    assert diffs == []
    migrate(store.engine)  # running again is a no-op


def test_identity_rows_upsert_and_load_by_course(store: Store) -> None:
    pairing = pairing_in(store)
    rows = [
        IdentityRow("assignment", "10:1", None, None, None, PENDING),
        IdentityRow("score", "10:1:7", "901:5", None, {"points": 9.0, "late": False, "exempt": False}),
        IdentityRow("score", "11:3:7", "902:5", None, {"points": 1.0, "late": False, "exempt": False}),
    ]
    with store.engine.begin() as db:
        upsert_identities(db, store, pairing, rows)
        upsert_identities(db, store, pairing, [IdentityRow("assignment", "10:1", "900", "h", {"name": "Quiz"})])
    loaded = load_identities(store, pairing, ("assignment", "score"), "10:")
    assert set(loaded) == {("assignment", "10:1"), ("score", "10:1:7")}
    assert loaded[("assignment", "10:1")].dest_id == "900"
    assert loaded[("assignment", "10:1")].state == "synced"
    assert loaded[("score", "10:1:7")].value == {"points": 9.0, "late": False, "exempt": False}
    with store.engine.begin() as db:
        delete_identities(db, pairing, [("score", "10:1:7")])
    assert ("score", "10:1:7") not in load_identities(store, pairing, ("score",), "10:")


def test_identity_rows_by_prefix_take_exactly_the_prefix(store: Store) -> None:
    """A course's rows are read by their ids' prefix: LIKE's wildcards, a neighbour's ids and unicode are
    taken as written, on PostgreSQL (a LIKE pattern) as on SQLite (a range of the key)."""
    pairing = pairing_in(store)
    ids = ["a_%:1", "a_%:2", "ab%:1", "a_x:1", "a_%;1", "a_%", "é:1", "é:2", "é;1", "f:1", "10:1", "10:", "100:1", "1:0"]
    with store.engine.begin() as db:
        upsert_identities(db, store, pairing, [IdentityRow("score", i, None, None, None) for i in ids])
    for prefix in ("a_%:", "é:", "10:", "1", ""):
        loaded = {source_id for _, source_id in load_identities(store, pairing, ("score",), prefix)}
        assert loaded == {i for i in ids if i.startswith(prefix)}, prefix


def test_run_history_keeps_every_item_and_audit_entry(store: Store) -> None:
    pairing = pairing_in(store)
    run_id = submit_run(store, pairing, pipeline="gradebook", request={}, trigger="manual", scope={"course_id": "10"},
                        actor="t")
    assert claim_run(store, run_id) and not claim_run(store, run_id)
    with store.engine.begin() as db:
        record_items(db, run_id, [
            ItemOutcome("assignment", "10:1", "created", "900", context={"assignment_id": "1"}),
            ItemOutcome("assignment", "10:2", "error", None, "points-possible-none", "Score entry points is required"),
        ])
        record_audit(db, run_id, pairing.destination_connection_id, [
            AuditEntry("created", "1", "7", "901", "5", None, {"points": 9.0, "late": False, "exempt": False}),
        ])
    status = finish_run(store, run_id, counts={"created": 1, "error": 1}, stats={"seconds": 0.1})
    assert status == "completed_with_errors"
    assert get_run(store, run_id[:8])["status"] == "completed_with_errors"
    errors = get_run_items(store, run_id, ("error",))
    assert [(e["code"], e["message"]) for e in errors] == [("points-possible-none", "Score entry points is required")]
    with store.engine.connect() as db:
        assert db.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one() == 1


def test_credentials_are_encrypted_at_rest(store: Store) -> None:
    key = b"0" * 43 + b"="
    save_connection(store, key, name="sis", kind="powerschool", base_url="http://sis",
                    credentials={"client_id": "plugin", "client_secret": "s3cr3t-value"})
    with store.engine.connect() as db:
        raw = db.execute(sa.select(connections.c.credentials)).scalar_one()
    assert "s3cr3t-value" not in raw and "plugin" not in raw
    assert get_connection(store, key, "sis").credentials["client_secret"] == "s3cr3t-value"
    assert "credentials" not in list_connections(store)[0]
    assert "s3cr3t" not in repr(get_connection(store, key, "sis"))


def test_key_file_is_created_owner_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path)
    key = load_key(settings)
    mode = stat.S_IMODE(os.stat(tmp_path / "secret.key").st_mode)
    assert mode == 0o600
    assert load_key(settings) == key
