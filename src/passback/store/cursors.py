"""Each route's incremental cursor per course: how far its reads got, and when it last read everything.

The row is written after a run that read the course succeeded in recording what it
read (whatever each item's outcome), under the course's lease, so one writer at a time.
A missing row means "read everything".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from passback.store.db import Store
from passback.store.identity import Pairing
from passback.store.tables import source_cursors


@dataclass(frozen=True)
class CourseCursor:
    name: str
    last_value: datetime | None
    fingerprint: str
    full_at: datetime
    dest_sections: tuple[str, ...] = ()  # the destination sections the last run read (read early by the next)


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _where(pairing: Pairing, course_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    c = source_cursors.c
    return (c.source_connection_id == pairing.source_connection_id,
            c.destination_connection_id == pairing.destination_connection_id, c.course_id == course_id)


def load_cursor(store: Store, pairing: Pairing, course_id: str) -> CourseCursor | None:
    with store.engine.connect() as db:
        row = db.execute(sa.select(source_cursors).where(*_where(pairing, course_id))).first()
    if row is None:
        return None
    full_at = _aware(row.full_at)
    assert full_at is not None
    return CourseCursor(row.name, _aware(row.last_value), row.fingerprint, full_at,
                        tuple(str(s) for s in row.dest_sections or ()))


def save_cursor(store: Store, pairing: Pairing, course_id: str, cursor: CourseCursor) -> None:
    values = {"name": cursor.name, "last_value": cursor.last_value, "fingerprint": cursor.fingerprint,
              "full_at": cursor.full_at, "updated_at": datetime.now(UTC), "dest_sections": list(cursor.dest_sections)}
    with store.transaction() as db:
        updated = db.execute(source_cursors.update().where(*_where(pairing, course_id)).values(**values))
        if not updated.rowcount:
            db.execute(source_cursors.insert().values(
                source_connection_id=pairing.source_connection_id,
                destination_connection_id=pairing.destination_connection_id, course_id=course_id, **values))


def forget_cursors(store: Store, pairing: Pairing, course_id: str | None = None) -> int:
    """The next read of the course (or of every course of the route) reads everything."""
    c = source_cursors.c
    where = [c.source_connection_id == pairing.source_connection_id,
             c.destination_connection_id == pairing.destination_connection_id]
    if course_id is not None:
        where.append(c.course_id == course_id)
    with store.transaction() as db:
        return db.execute(source_cursors.delete().where(*where)).rowcount or 0
