"""Course titles as last seen, so a page can name a course without reading it from the LMS."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from passback.store.db import Store
from passback.store.tables import course_names


def remember_course_name(store: Store, source_connection_id: int, course_id: str, name: str) -> None:
    with store.transaction() as db:
        updated = db.execute(course_names.update().where(
            course_names.c.source_connection_id == source_connection_id, course_names.c.course_id == course_id,
        ).values(name=name[:500], updated_at=datetime.now(UTC)))
        if not updated.rowcount:
            db.execute(course_names.insert().values(source_connection_id=source_connection_id, course_id=course_id,
                                                    name=name[:500], updated_at=datetime.now(UTC)))


def course_names_of(store: Store, source_connection_id: int) -> dict[str, str]:
    with store.engine.connect() as db:
        rows = db.execute(sa.select(course_names.c.course_id, course_names.c.name)
                          .where(course_names.c.source_connection_id == source_connection_id)).all()
    return {row.course_id: row.name for row in rows}
