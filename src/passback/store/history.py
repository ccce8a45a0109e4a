"""Run history (M3) and the audit log: what each run did to each item, kept forever."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from passback.store import bulk
from passback.store.db import Store
from passback.store.identity import Pairing
from passback.store.tables import audit_log, run_items, runs

OUTCOMES = ("created", "updated", "unchanged", "deleted", "skipped", "error")


@dataclass(frozen=True)
class ItemOutcome:
    object_kind: str
    source_id: str
    outcome: str
    dest_id: str | None = None
    code: str | None = None
    message: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    action: str
    source_assignment_id: str
    source_student_id: str
    dest_assignment_id: str | None
    dest_student_id: str | None
    old_value: Any
    new_value: Any
    answer: str = "accepted"  # what the destination said to the write


def empty_counts() -> dict[str, int]:
    return {outcome: 0 for outcome in OUTCOMES}


QUEUED, RUNNING, FAILED = "queued", "running", "failed"
MULTI = "multi"  # a run to several destinations: its items are in its part runs


def submit_run(store: Store, pairing: Pairing, *, pipeline: str, request: dict[str, Any], trigger: str,
               scope: dict[str, Any], actor: str, parent_run_id: str | None = None, status: str = QUEUED,
               run_id: str | None = None) -> str:
    """Store a queued run; :func:`claim_run` later takes it, once.

    ``run_id`` names it in advance: a second submit of that id fails on the key (two
    deliveries of one task continuing one interrupted run make one run, not two).
    """
    run_id = run_id or str(uuid.uuid4())
    with store.transaction() as db:
        db.execute(runs.insert().values(
            id=run_id, source_connection_id=pairing.source_connection_id,
            destination_connection_id=pairing.destination_connection_id, trigger=trigger, scope=scope,
            actor=actor, dry_run=False, status=status, started_at=datetime.now(UTC), counts=empty_counts(),
            stats={}, pipeline=pipeline, request=request, parent_run_id=parent_run_id,
            course_id=None if scope.get("course_id") is None else str(scope["course_id"])))
    return run_id


def part_runs(store: Store, parent_run_id: str) -> list[dict[str, Any]]:
    """The runs a run to several destinations is made of, one per destination."""
    with store.engine.connect() as db:
        rows = db.execute(sa.select(runs).where(runs.c.parent_run_id == parent_run_id)
                          .order_by(runs.c.destination_connection_id)).all()
    return [dict(row._mapping) for row in rows]


def claim_run(store: Store, run_id: str) -> bool:
    """Mark a queued run running; false when another process claimed it first (or it is not queued)."""
    with store.transaction() as db:
        claimed = db.execute(runs.update().where(runs.c.id == run_id, runs.c.status == QUEUED)
                             .values(status=RUNNING, started_at=datetime.now(UTC)))
    return claimed.rowcount == 1


def run_request(store: Store, run_id: str) -> tuple[str, dict[str, Any] | None, str] | None:
    """(pipeline, request, status) of a run, or None when there is no such run."""
    with store.engine.connect() as db:
        row = db.execute(sa.select(runs.c.pipeline, runs.c.request, runs.c.status).where(runs.c.id == run_id)).first()
    return None if row is None else (row.pipeline, row.request, row.status)


RUN_ITEM_COLUMNS = ("run_id", "object_kind", "source_id", "dest_id", "outcome", "code", "message", "context")
AUDIT_COLUMNS = ("run_id", "at", "destination_connection_id", "action", "source_assignment_id", "source_student_id",
                 "dest_assignment_id", "dest_student_id", "old_value", "new_value", "answer")


def record_items(db: sa.Connection, run_id: str, items: list[ItemOutcome]) -> None:
    bulk.insert_rows(db, "run_items", RUN_ITEM_COLUMNS, [
        (run_id, item.object_kind, item.source_id, item.dest_id, item.outcome, item.code, item.message, item.context)
        for item in items], json_columns=frozenset({"context"}))


def record_audit(
    db: sa.Connection, run_id: str, destination_connection_id: int, entries: list[AuditEntry]
) -> None:
    at = bulk.now_value(db)
    bulk.insert_rows(db, "audit_log", AUDIT_COLUMNS, [
        (run_id, at, destination_connection_id, entry.action, entry.source_assignment_id, entry.source_student_id,
         entry.dest_assignment_id, entry.dest_student_id, entry.old_value, entry.new_value, entry.answer)
        for entry in entries], json_columns=frozenset({"old_value", "new_value"}))


def finish_run(
    store: Store,
    run_id: str,
    *,
    counts: dict[str, int],
    stats: dict[str, Any],
    failure: str | None = None,
    status: str | None = None,
) -> str:
    if failure:
        status = FAILED
    elif status is None:
        status = "completed_with_errors" if counts.get("error") else "succeeded"
    with store.transaction() as db:
        db.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(
                status=status,
                finished_at=datetime.now(UTC),
                counts=counts,
                stats=stats,
                failure=failure,
            )
        )
    return status


def list_runs(store: Store, limit: int = 20) -> list[dict[str, Any]]:
    with store.engine.connect() as db:
        rows = db.execute(sa.select(runs).order_by(runs.c.started_at.desc()).limit(limit)).all()
    return [dict(row._mapping) for row in rows]


def list_course_runs(store: Store, pairing: Pairing, course_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """A course's runs on one route, newest first."""
    query = (sa.select(runs).where(runs.c.source_connection_id == pairing.source_connection_id,
                                   runs.c.destination_connection_id == pairing.destination_connection_id,
                                   runs.c.course_id == course_id, runs.c.pipeline != MULTI)
             .order_by(runs.c.started_at.desc()).limit(limit))
    with store.engine.connect() as db:
        return [dict(row._mapping) for row in db.execute(query).all()]


def list_audit(store: Store, *, destination_connection_id: int | None = None, run_id: str | None = None,
               assignment_id: str | None = None, student_id: str | None = None, action: str | None = None,
               limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    """The audit log, newest first, filtered by whatever is given."""
    query = sa.select(audit_log, runs.c.actor, runs.c.trigger, runs.c.course_id).join(
        runs, runs.c.id == audit_log.c.run_id)
    for column, value in ((audit_log.c.destination_connection_id, destination_connection_id),
                          (audit_log.c.run_id, run_id), (audit_log.c.source_assignment_id, assignment_id),
                          (audit_log.c.source_student_id, student_id), (audit_log.c.action, action)):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(audit_log.c.id.desc()).limit(limit).offset(offset)
    with store.engine.connect() as db:
        return [dict(row._mapping) for row in db.execute(query).all()]


RUN_ID_LENGTH = 36  # a run's id is a UUID's text


def get_run(store: Store, run_id: str) -> dict[str, Any] | None:
    """A run by id, or by a unique prefix of its id (as people type them).

    A whole id is looked up by the key: a prefix (LIKE) cannot use the key's index outside the C
    locale, and the workers' callers ask by whole id, once per run and per poll.
    """
    whole = len(run_id) == RUN_ID_LENGTH
    with store.engine.connect() as db:
        rows = db.execute(
            sa.select(runs).where(runs.c.id == run_id if whole else runs.c.id.startswith(run_id, autoescape=True))
            .limit(2)
        ).all()
    if len(rows) != 1:
        return None
    return dict(rows[0]._mapping)


def get_run_items(
    store: Store, run_id: str, outcomes: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    query = sa.select(run_items).where(run_items.c.run_id == run_id).order_by(run_items.c.id)
    if outcomes:
        query = query.where(run_items.c.outcome.in_(outcomes))
    with store.engine.connect() as db:
        return [dict(row._mapping) for row in db.execute(query).all()]


def count_audit(store: Store, run_id: str) -> int:
    with store.engine.connect() as db:
        return db.execute(
            sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.run_id == run_id)
        ).scalar_one()


INTERRUPTED = "interrupted"


def recorded_counts(db: sa.Connection, run_id: str) -> dict[str, int]:
    """A run's counts from the items it recorded: what a run that died did keep."""
    rows = db.execute(sa.select(run_items.c.outcome, sa.func.count()).where(run_items.c.run_id == run_id)
                      .group_by(run_items.c.outcome)).all()
    return empty_counts() | {outcome: n for outcome, n in rows}


def interrupt_run(store: Store, run_id: str, reason: str) -> bool:
    """End a run that died while running as "interrupted", keeping the counts of what it recorded."""
    with store.transaction() as db:
        result = db.execute(runs.update().where(runs.c.id == run_id, runs.c.status == RUNNING).values(
            status=INTERRUPTED, finished_at=datetime.now(UTC), failure=reason,
            counts=recorded_counts(db, run_id)))
    return bool(result.rowcount)


def queued_since(store: Store, before: datetime) -> list[str]:
    """Runs still queued that were submitted before ``before``, oldest first."""
    with store.engine.connect() as db:
        rows = db.execute(sa.select(runs.c.id).where(runs.c.status == QUEUED, runs.c.started_at < before)
                          .order_by(runs.c.started_at)).all()
    return [row.id for row in rows]


def running_since(store: Store, before: datetime) -> list[str]:
    """Runs marked running that started before ``before``."""
    with store.engine.connect() as db:
        rows = db.execute(sa.select(runs.c.id).where(runs.c.status == RUNNING, runs.c.started_at < before)).all()
    return [row.id for row in rows]
