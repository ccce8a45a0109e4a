"""Course schedules: per course and route, synced nightly or only when a person asks.

The schedule is the row, not a timer in some process: ``next_run_at`` says when the
course is due, and a scheduler claims a due row with a conditional UPDATE that moves
``next_run_at`` on (:func:`claim`). Only one of two schedulers (threads, processes or
machines sharing the store) sees its UPDATE change the row, so a course is run once per
night however many schedulers tick. All times are stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from passback.errors import NotFound
from passback.store.db import Store
from passback.store.tables import course_schedules

NIGHTLY, MANUAL = "nightly", "manual"
MODES = (NIGHTLY, MANUAL)


def _utc(value: datetime | None) -> datetime | None:
    """Stored as UTC: SQLite keeps no zone, so an aware time in another zone would be read back wrong."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _schedule(row: sa.Row[Any]) -> dict[str, Any]:
    found = dict(row._mapping)
    for name in ("next_run_at", "last_run_at", "updated_at"):
        found[name] = _utc(found[name])
    return found


def _key(source_connection_id: int, destination_connection_id: int, course_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(course_schedules.c.source_connection_id == source_connection_id,
                   course_schedules.c.destination_connection_id == destination_connection_id,
                   course_schedules.c.course_id == course_id)


def save_schedule(store: Store, *, source_connection_id: int, destination_connection_id: int, course_id: str,
                  mode: str, next_run_at: datetime | None, actor: str) -> dict[str, Any]:
    """Create or replace the course's schedule (its last run is kept); NotFound for an unknown connection."""
    values = {"mode": mode, "next_run_at": _utc(next_run_at), "actor": actor[:100], "updated_at": datetime.now(UTC)}
    key = _key(source_connection_id, destination_connection_id, course_id)
    try:
        with store.transaction() as db:
            if db.execute(course_schedules.update().where(key).values(**values)).rowcount == 0:
                db.execute(course_schedules.insert().values(
                    source_connection_id=source_connection_id, destination_connection_id=destination_connection_id,
                    course_id=course_id, **values))
    except sa.exc.IntegrityError as exc:
        again = get_schedule_row(store, source_connection_id, destination_connection_id, course_id)
        if again is None:  # a foreign key: no such connection
            raise NotFound(f"No connection with id {source_connection_id} or {destination_connection_id}; "
                           "list them with `passback connections`.") from exc
        # another process created it between our UPDATE and INSERT: ours is the newer wish
        with store.transaction() as db:
            db.execute(course_schedules.update().where(key).values(**values))
    found = get_schedule_row(store, source_connection_id, destination_connection_id, course_id)
    assert found is not None
    return found


def delete_schedule(store: Store, source_connection_id: int, destination_connection_id: int, course_id: str) -> bool:
    with store.transaction() as db:
        return db.execute(course_schedules.delete().where(
            _key(source_connection_id, destination_connection_id, course_id))).rowcount == 1


def get_schedule_row(store: Store, source_connection_id: int, destination_connection_id: int,
                     course_id: str) -> dict[str, Any] | None:
    with store.engine.connect() as db:
        row = db.execute(sa.select(course_schedules).where(
            _key(source_connection_id, destination_connection_id, course_id))).first()
    return None if row is None else _schedule(row)


def list_schedule_rows(store: Store, *, mode: str | None = None, source_connection_id: int | None = None,
                       course_id: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(course_schedules).order_by(course_schedules.c.source_connection_id,
                                                 course_schedules.c.destination_connection_id, course_schedules.c.course_id)
    if mode is not None:
        query = query.where(course_schedules.c.mode == mode)
    if source_connection_id is not None:
        query = query.where(course_schedules.c.source_connection_id == source_connection_id)
    if course_id is not None:
        query = query.where(course_schedules.c.course_id == course_id)
    with store.engine.connect() as db:
        return [_schedule(row) for row in db.execute(query)]


def due(store: Store, now: datetime) -> list[dict[str, Any]]:
    """Nightly schedules whose time has come (a missed one, long past, too), the longest waiting first."""
    with store.engine.connect() as db:
        rows = db.execute(sa.select(course_schedules).where(
            course_schedules.c.mode == NIGHTLY, course_schedules.c.next_run_at.is_not(None),
            course_schedules.c.next_run_at <= _utc(now)).order_by(course_schedules.c.next_run_at, course_schedules.c.id))
        return [_schedule(row) for row in rows]


def claim(store: Store, schedule_id: int, *, was: datetime, then: datetime) -> bool:
    """Move a due schedule's next run from ``was`` to ``then``: true for the one caller whose UPDATE did it.

    The UPDATE is conditional on the row still saying ``was`` (and nightly), so of two
    schedulers that read the same due row, the second changes nothing and runs nothing.
    """
    with store.transaction() as db:
        moved = db.execute(course_schedules.update().where(
            course_schedules.c.id == schedule_id, course_schedules.c.mode == NIGHTLY,
            course_schedules.c.next_run_at == _utc(was)).values(next_run_at=_utc(then)))
    return moved.rowcount == 1


def record_run(store: Store, schedule_id: int, *, run_id: str, at: datetime) -> None:
    with store.transaction() as db:
        db.execute(course_schedules.update().where(course_schedules.c.id == schedule_id)
                   .values(last_run_id=run_id, last_run_at=_utc(at)))


def set_next_run(store: Store, schedule_id: int, next_run_at: datetime | None) -> None:
    """Move one schedule's next run (a changed nightly window; tests forcing a missed night)."""
    with store.transaction() as db:
        db.execute(course_schedules.update().where(course_schedules.c.id == schedule_id)
                   .values(next_run_at=_utc(next_run_at)))
