"""Change events received (Canvas Live Events, courseware events): a durable, de-duplicated log, per course.

The web route records an event (:func:`record`) before it answers Canvas, so an event
acknowledged is never lost; a coalescer reads which courses have pending events
(:func:`pending_courses`), claims a course's burst for a while (:func:`claim`), hands it
to a dispatch and marks it processed (:func:`mark_processed`) or lets the claim go
(:func:`release`) so a later tick tries again. The claim keeps two coalescers (two web
processes sharing the store) from dispatching one burst twice.

Canvas delivers at least once, so one event may arrive twice: each row has a
``dedupe_key`` (derived from the event's identity by the service, see
``services.live_events.dedupe_key``), unique per source connection, and a second
arrival inserts nothing. Only the ids passback acts on are kept (``detail``), never the
whole event: its metadata names the teacher, their address and browser.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from passback.store.db import Store
from passback.store.tables import connections, live_events


@dataclass(frozen=True)
class NewEvent:
    """An event as the service parsed it, ready to store."""

    course_id: str
    event_name: str
    event_time: datetime
    dedupe_key: str
    assignment_id: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class StoredEvent:
    id: int
    source_connection_id: int
    course_id: str
    event_name: str
    event_time: datetime
    assignment_id: str | None
    detail: dict[str, Any]
    received_at: datetime
    processed_at: datetime | None
    outcome: str | None


@dataclass(frozen=True)
class Recorded:
    id: int
    duplicate: bool  # the event was there already (a redelivery): nothing was stored


@dataclass(frozen=True)
class PendingCourse:
    """A course with events waiting: how many, and when the first and the last of them arrived."""

    source_connection_id: int
    course_id: str
    count: int
    first_received_at: datetime
    last_received_at: datetime


@dataclass(frozen=True)
class EventSource:
    """A connection events may come from (Canvas, courseware): where it lives, its settings (never credentials)."""

    id: int
    name: str
    base_url: str
    settings: dict[str, Any]


def _utc(value: datetime) -> datetime:
    """Stored as UTC: SQLite keeps no zone, so a time is written in UTC and read back as UTC."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _insert(db: sa.Connection) -> Any:
    if db.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(live_events)


def record(store: Store, source_connection_id: int, event: NewEvent, *, now: datetime | None = None) -> Recorded:
    """Store the event unless one with its key is there (one statement: two deliveries at once store one row)."""
    values = {"source_connection_id": source_connection_id, "course_id": event.course_id[:200],
              "event_name": event.event_name[:60], "event_time": _utc(event.event_time),
              "dedupe_key": event.dedupe_key, "assignment_id": event.assignment_id, "detail": event.detail,
              "received_at": _utc(now or datetime.now(UTC))}
    with store.transaction() as db:
        statement = _insert(db).values(**values).on_conflict_do_nothing(
            index_elements=[live_events.c.source_connection_id, live_events.c.dedupe_key])
        inserted = db.execute(statement.returning(live_events.c.id)).scalar_one_or_none()
        if inserted is not None:
            return Recorded(int(inserted), duplicate=False)
        existing = db.execute(sa.select(live_events.c.id).where(
            live_events.c.source_connection_id == source_connection_id,
            live_events.c.dedupe_key == event.dedupe_key)).scalar_one()
    return Recorded(int(existing), duplicate=True)


def _stored(row: sa.Row[Any]) -> StoredEvent:
    return StoredEvent(id=row.id, source_connection_id=row.source_connection_id, course_id=row.course_id,
                       event_name=row.event_name, event_time=_utc(row.event_time), assignment_id=row.assignment_id,
                       detail=dict(row.detail or {}), received_at=_utc(row.received_at),
                       processed_at=_maybe_utc(row.processed_at), outcome=row.outcome)


def pending_courses(store: Store) -> list[PendingCourse]:
    """Every (source connection, course) with unprocessed events, oldest arrival first."""
    with store.engine.connect() as db:
        rows = db.execute(
            sa.select(live_events.c.source_connection_id, live_events.c.course_id, sa.func.count(),
                      sa.func.min(live_events.c.received_at), sa.func.max(live_events.c.received_at))
            .where(live_events.c.processed_at.is_(None))
            .group_by(live_events.c.source_connection_id, live_events.c.course_id)
            .order_by(sa.func.min(live_events.c.received_at))).all()
    return [PendingCourse(row[0], row[1], int(row[2]), _utc(row[3]), _utc(row[4])) for row in rows]


def pending(store: Store, source_connection_id: int, course_id: str) -> list[StoredEvent]:
    """The course's unprocessed events in the order they happened (``event_time``; arrival breaks ties)."""
    with store.engine.connect() as db:
        rows = db.execute(sa.select(live_events).where(
            live_events.c.source_connection_id == source_connection_id, live_events.c.course_id == course_id,
            live_events.c.processed_at.is_(None)).order_by(live_events.c.event_time, live_events.c.id)).all()
    return [_stored(row) for row in rows]


def get_events(store: Store, event_ids: Iterable[int]) -> list[StoredEvent]:
    """The events with these ids, in the order they happened."""
    ids = list(event_ids)
    if not ids:
        return []
    with store.engine.connect() as db:
        rows = db.execute(sa.select(live_events).where(live_events.c.id.in_(ids))
                          .order_by(live_events.c.event_time, live_events.c.id)).all()
    return [_stored(row) for row in rows]


def claim(store: Store, source_connection_id: int, course_id: str, *, ttl: float,
          now: datetime | None = None) -> list[StoredEvent]:
    """Take the course's pending events that no one else holds, for ``ttl`` seconds; those taken, by event time.

    A conditional UPDATE, so of two coalescers claiming at once each event goes to one.
    A claim that outlives its holder (a process that died mid-dispatch) expires.
    """
    now = _utc(now or datetime.now(UTC))
    free = sa.or_(live_events.c.claimed_until.is_(None), live_events.c.claimed_until < now)
    course = sa.and_(live_events.c.source_connection_id == source_connection_id, live_events.c.course_id == course_id,
                     live_events.c.processed_at.is_(None))
    with store.transaction() as db:
        ids = db.execute(sa.select(live_events.c.id).where(course, free)).scalars().all()
        if not ids:
            return []
        taken = db.execute(live_events.update().where(live_events.c.id.in_(ids), free)  # free again when it locks
                           .values(claimed_until=now + timedelta(seconds=ttl)).returning(live_events.c.id)).scalars().all()
        if not taken:
            return []
        rows = db.execute(sa.select(live_events).where(live_events.c.id.in_(taken))
                          .order_by(live_events.c.event_time, live_events.c.id)).all()
    return [_stored(row) for row in rows]


def release(store: Store, event_ids: Iterable[int]) -> None:
    """Let the claim go (the dispatch failed): the events are pending and free for the next tick."""
    ids = list(event_ids)
    if ids:
        with store.transaction() as db:
            db.execute(live_events.update().where(live_events.c.id.in_(ids), live_events.c.processed_at.is_(None))
                       .values(claimed_until=None))


def mark_processed(store: Store, event_ids: Iterable[int], outcome: str, *, now: datetime | None = None) -> int:
    """The events were acted on (``outcome`` says how, e.g. the run made); how many were marked."""
    ids = list(event_ids)
    if not ids:
        return 0
    with store.transaction() as db:
        return db.execute(live_events.update().where(live_events.c.id.in_(ids), live_events.c.processed_at.is_(None))
                          .values(processed_at=_utc(now or datetime.now(UTC)), outcome=outcome[:200],
                                  claimed_until=None)).rowcount


def count_events(store: Store, source_connection_id: int | None = None) -> int:
    """How many events are stored (of one connection): tests and a status line."""
    query = sa.select(sa.func.count()).select_from(live_events)
    if source_connection_id is not None:
        query = query.where(live_events.c.source_connection_id == source_connection_id)
    with store.engine.connect() as db:
        return int(db.execute(query).scalar_one())


def canvas_sources(store: Store) -> list[EventSource]:
    """The Canvas connections (Live Events come from Canvas), with their settings."""
    return sources_of_kind(store, "canvas")


def sources_of_kind(store: Store, kind: str) -> list[EventSource]:
    """The connections of one kind events may come from (Canvas, courseware), with their settings."""
    with store.engine.connect() as db:
        rows = db.execute(sa.select(connections.c.id, connections.c.name, connections.c.base_url,
                                    connections.c.settings).where(connections.c.kind == kind)
                          .order_by(connections.c.id)).all()
    return [EventSource(row.id, row.name, row.base_url, dict(row.settings or {})) for row in rows]
