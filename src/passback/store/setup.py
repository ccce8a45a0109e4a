"""Course setup kept by passback: category mappings (C2) and sync switches (C4).

Mappings are keyed by the categories' stable ids, never their names, so a teacher
renaming a group in the LMS does not break the sync; the names at mapping time are
kept only to tell the teacher what changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from passback.store.db import Store
from passback.store.identity import Pairing
from passback.store.tables import assignment_switches, category_mappings


@dataclass(frozen=True)
class CategoryMapping:
    source_category_id: str
    source_category_name: str
    dest_category_id: str
    dest_category_name: str


def save_mapping(store: Store, pairing: Pairing, course_id: str, mapping: CategoryMapping) -> None:
    key = (
        (category_mappings.c.source_connection_id == pairing.source_connection_id)
        & (category_mappings.c.destination_connection_id == pairing.destination_connection_id)
        & (category_mappings.c.course_id == course_id)
        & (category_mappings.c.source_category_id == mapping.source_category_id)
    )
    values = {
        "source_category_name": mapping.source_category_name,
        "dest_category_id": mapping.dest_category_id,
        "dest_category_name": mapping.dest_category_name,
        "updated_at": datetime.now(UTC),
    }
    with store.transaction() as db:
        if db.execute(sa.select(category_mappings.c.id).where(key)).first():
            db.execute(category_mappings.update().where(key).values(**values))
        else:
            db.execute(category_mappings.insert().values(
                source_connection_id=pairing.source_connection_id,
                destination_connection_id=pairing.destination_connection_id,
                course_id=course_id, source_category_id=mapping.source_category_id, **values))


def delete_mapping(store: Store, pairing: Pairing, course_id: str, source_category_id: str) -> bool:
    with store.transaction() as db:
        result = db.execute(category_mappings.delete().where(
            (category_mappings.c.source_connection_id == pairing.source_connection_id)
            & (category_mappings.c.destination_connection_id == pairing.destination_connection_id)
            & (category_mappings.c.course_id == course_id)
            & (category_mappings.c.source_category_id == source_category_id)))
    return result.rowcount > 0


def load_mappings(store: Store, pairing: Pairing, course_id: str) -> dict[str, CategoryMapping]:
    with store.engine.connect() as db:
        rows = db.execute(sa.select(category_mappings).where(
            (category_mappings.c.source_connection_id == pairing.source_connection_id)
            & (category_mappings.c.destination_connection_id == pairing.destination_connection_id)
            & (category_mappings.c.course_id == course_id))).all()
    return {
        row.source_category_id: CategoryMapping(row.source_category_id, row.source_category_name,
                                                row.dest_category_id, row.dest_category_name)
        for row in rows
    }


def save_switch(store: Store, source_connection_id: int, course_id: str, assignment_id: str, sync: bool) -> None:
    key = (
        (assignment_switches.c.source_connection_id == source_connection_id)
        & (assignment_switches.c.course_id == course_id)
        & (assignment_switches.c.assignment_id == assignment_id)
    )
    with store.transaction() as db:
        if db.execute(sa.select(assignment_switches.c.id).where(key)).first():
            db.execute(assignment_switches.update().where(key).values(sync=sync, updated_at=datetime.now(UTC)))
        else:
            db.execute(assignment_switches.insert().values(
                source_connection_id=source_connection_id, course_id=course_id, assignment_id=assignment_id,
                sync=sync, updated_at=datetime.now(UTC)))


def load_switches(store: Store, source_connection_id: int, course_id: str) -> dict[str, bool]:
    with store.engine.connect() as db:
        rows = db.execute(sa.select(assignment_switches.c.assignment_id, assignment_switches.c.sync).where(
            (assignment_switches.c.source_connection_id == source_connection_id)
            & (assignment_switches.c.course_id == course_id))).all()
    return {row.assignment_id: row.sync for row in rows}
