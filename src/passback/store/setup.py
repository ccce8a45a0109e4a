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


# --- matching: rules per connection pair, overrides by hand (rules/matching.py decides) -----------

from passback.store.tables import match_overrides, match_rules  # noqa: E402 - kept with the code that uses them

MATCH_RULE_FIELDS = ("source_field", "dest_field", "pattern", "strip_prefix", "strip_suffix")


@dataclass(frozen=True)
class MatchOverride:
    kind: str
    course_id: str  # "" for a pair-wide override (a student is the same person in every course)
    source_id: str
    dest_id: str
    source_name: str | None = None


def _pair(table: sa.Table, pairing: Pairing) -> sa.ColumnElement[bool]:
    return ((table.c.source_connection_id == pairing.source_connection_id)
            & (table.c.destination_connection_id == pairing.destination_connection_id))


def save_match_rule(store: Store, pairing: Pairing, kind: str, rule: dict[str, str | None]) -> None:
    """Keep the pair's rule for one kind (its fields by name; ``pattern`` may be None)."""
    key = _pair(match_rules, pairing) & (match_rules.c.object_kind == kind)
    values = {"source_field": rule["source_field"], "dest_field": rule["dest_field"], "pattern": rule.get("pattern"),
              "strip_prefix": rule.get("strip_prefix") or "", "strip_suffix": rule.get("strip_suffix") or "",
              "updated_at": datetime.now(UTC)}
    with store.transaction() as db:
        if db.execute(sa.select(match_rules.c.id).where(key)).first():
            db.execute(match_rules.update().where(key).values(**values))
        else:
            db.execute(match_rules.insert().values(
                source_connection_id=pairing.source_connection_id,
                destination_connection_id=pairing.destination_connection_id, object_kind=kind, **values))


def delete_match_rule(store: Store, pairing: Pairing, kind: str) -> bool:
    with store.transaction() as db:
        result = db.execute(match_rules.delete().where(_pair(match_rules, pairing) & (match_rules.c.object_kind == kind)))
    return result.rowcount > 0


def load_match_rules(store: Store, pairing: Pairing) -> list[dict[str, str | None]]:
    """The pair's rules, each as its fields by name with its ``kind``."""
    with store.engine.connect() as db:
        rows = db.execute(sa.select(match_rules).where(_pair(match_rules, pairing))
                          .order_by(match_rules.c.object_kind)).all()
    return [{"kind": row.object_kind, **{name: getattr(row, name) for name in MATCH_RULE_FIELDS}} for row in rows]


def save_match_override(store: Store, pairing: Pairing, override: MatchOverride) -> None:
    key = (_pair(match_overrides, pairing) & (match_overrides.c.object_kind == override.kind)
           & (match_overrides.c.course_id == override.course_id)
           & (match_overrides.c.source_id == override.source_id))
    values = {"dest_id": override.dest_id, "source_name": override.source_name, "updated_at": datetime.now(UTC)}
    with store.transaction() as db:
        if db.execute(sa.select(match_overrides.c.id).where(key)).first():
            db.execute(match_overrides.update().where(key).values(**values))
        else:
            db.execute(match_overrides.insert().values(
                source_connection_id=pairing.source_connection_id,
                destination_connection_id=pairing.destination_connection_id, object_kind=override.kind,
                course_id=override.course_id, source_id=override.source_id, **values))


def delete_match_override(store: Store, pairing: Pairing, kind: str, course_id: str, source_id: str) -> bool:
    with store.transaction() as db:
        result = db.execute(match_overrides.delete().where(
            _pair(match_overrides, pairing) & (match_overrides.c.object_kind == kind)
            & (match_overrides.c.course_id == course_id) & (match_overrides.c.source_id == source_id)))
    return result.rowcount > 0


def load_match_overrides(store: Store, pairing: Pairing, course_id: str | None = None) -> list[MatchOverride]:
    """The pair's overrides: for one course (with the pair-wide ones), or all of them (``course_id`` None)."""
    query = sa.select(match_overrides).where(_pair(match_overrides, pairing))
    if course_id is not None:
        query = query.where(match_overrides.c.course_id.in_(("", course_id)))
    with store.engine.connect() as db:
        rows = db.execute(query.order_by(match_overrides.c.object_kind, match_overrides.c.course_id,
                                         match_overrides.c.source_id)).all()
    return [MatchOverride(row.object_kind, row.course_id, row.source_id, row.dest_id, row.source_name)
            for row in rows]
