"""The identity map (M2): source id to destination id, and the value last written.

The value last written is what makes a sync incremental (unchanged values are not
sent) and what later lets passback notice a grade edited by hand in the destination.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from passback.jsontext import loads
from passback.store import bulk
from passback.store.db import Store
from passback.store.tables import identity_map

PENDING = "pending"
SYNCED = "synced"


@dataclass(slots=True)
class IdentityRow:
    """One identity row as read or about to be written; treated as a value, never changed in place.

    Not frozen: a course's run loads thousands of these, and a frozen dataclass is four times
    slower to build (each field set through ``object.__setattr__``).
    """

    object_kind: str
    source_id: str
    dest_id: str | None
    value_hash: str | None
    value: Any
    state: str = SYNCED
    natural_key: Any = None


@dataclass(frozen=True)
class Release:
    """Forget an identity row, but only if it still points where this run saw it point.

    The rule that keeps runs from undoing each other: a run may remove only state it read
    or wrote itself. ``dest_id`` is the destination id the row held when this run read it
    or wrote it (``None`` for the pending row the run announced); if another run has since
    linked the row elsewhere, the release leaves it alone.
    """

    object_kind: str
    source_id: str
    dest_id: str | None


@dataclass(frozen=True)
class Pairing:
    """The two connections a sync moves grades between."""

    source_connection_id: int
    destination_connection_id: int


IdentityIndex = dict[tuple[str, str], IdentityRow]


def load_identities(
    store: Store, pairing: Pairing, kinds: tuple[str, ...], source_prefix: str | None = None
) -> IdentityIndex:
    """All identity rows of the pairing for these kinds, keyed by (kind, source id).

    Every run of a course loads its thousands of rows, an unchanged run included, so this is
    written for speed: one driver query (no SQLAlchemy row processing), the JSON columns read as
    text and parsed by orjson (passback.jsontext), and each distinct text parsed once: a course's
    scores repeat a few values thousands of times. Rows with equal values share one object, so
    a row's value is read, never changed in place.
    """
    with store.engine.connect() as db:
        mark = "?" if db.dialect.paramstyle == "qmark" else "%s"
        one_kind = ("SELECT object_kind, source_id, dest_id, value_hash, CAST(value AS TEXT), state, "
                    f"CAST(natural_key AS TEXT) FROM identity_map WHERE source_connection_id = {mark} "
                    f"AND destination_connection_id = {mark} AND object_kind = {mark}")
        if source_prefix:
            one_kind += prefix_condition(db.dialect.name, mark)
        rows = []
        for kind in kinds:  # one kind at a time: each an equality the index's third column serves (tables.py)
            params: tuple[Any, ...] = (pairing.source_connection_id, pairing.destination_connection_id, kind)
            if source_prefix:
                params += prefix_params(db.dialect.name, source_prefix)
            rows += db.exec_driver_sql(one_kind, params).all()
    parsed: dict[str, Any] = {}

    def value_of(text: str | None) -> Any:
        if text is None:
            return None
        found = parsed.get(text, parsed)
        if found is parsed:
            found = parsed[text] = loads(text)
        return found

    return {
        (kind, source_id): IdentityRow(kind, source_id, dest_id, value_hash, value_of(value), state,
                                       None if natural_key is None else loads(natural_key))
        for kind, source_id, dest_id, value_hash, value, state, natural_key in rows
    }


def prefix_condition(dialect: str, mark: str) -> str:
    """Source ids starting with a prefix, in a form each database serves from an index (tables.py says which)."""
    if dialect == "postgresql":
        return f" AND source_id LIKE {mark}"
    return f" AND source_id >= {mark} AND source_id < {mark}"


def prefix_params(dialect: str, prefix: str) -> tuple[str, ...]:
    r"""The values for :func:`prefix_condition`, of a prefix not empty: a LIKE pattern (``\`` escapes),
    or a range's two ends."""
    if dialect == "postgresql":
        return (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",)
    return (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))


INSERT_SQL = (
    "INSERT INTO identity_map (source_connection_id, destination_connection_id, object_kind, source_id, dest_id, "
    "value_hash, value, state, natural_key, updated_at) VALUES ({marks}) "
    "ON CONFLICT (source_connection_id, destination_connection_id, object_kind, source_id) "
)
UPSERT_SQL = INSERT_SQL + (
    "DO UPDATE SET dest_id = excluded.dest_id, value_hash = excluded.value_hash, value = excluded.value, "
    "state = excluded.state, natural_key = excluded.natural_key, updated_at = excluded.updated_at"
)


def upsert_identities(db: sa.Connection, store: Store, pairing: Pairing, rows: list[IdentityRow]) -> None:
    """Write many identity rows in one driver call, inside the caller's transaction."""
    if not rows:
        return
    now = bulk.now_value(db)
    source, dest = pairing.source_connection_id, pairing.destination_connection_id
    bulk.executemany(db, UPSERT_SQL.format(marks=bulk.marks(db, 10)), [
        (source, dest, row.object_kind, row.source_id, row.dest_id, row.value_hash, bulk.json_value(db, row.value),
         row.state, bulk.json_value(db, row.natural_key), now)
        for row in rows
    ])


def load_values(store: Store, pairing: Pairing, kind: str) -> dict[str, Any]:
    """Source id -> stored value for one kind, decoded here rather than row by row by SQLAlchemy."""
    with store.engine.connect() as db:
        mark = "?" if db.dialect.paramstyle == "qmark" else "%s"
        rows = db.exec_driver_sql(
            "SELECT source_id, CAST(value AS TEXT) FROM identity_map WHERE source_connection_id = "
            f"{mark} AND destination_connection_id = {mark} AND object_kind = {mark}",
            (pairing.source_connection_id, pairing.destination_connection_id, kind)).all()
    return {source_id: loads(text) for source_id, text in rows if text is not None}


def load_hashes(store: Store, pairing: Pairing, kind: str) -> dict[str, str | None]:
    """Source id -> value hash for one kind: the cheapest look at what was seen before."""
    with store.engine.connect() as db:
        rows = db.execute(sa.select(identity_map.c.source_id, identity_map.c.value_hash).where(
            identity_map.c.source_connection_id == pairing.source_connection_id,
            identity_map.c.destination_connection_id == pairing.destination_connection_id,
            identity_map.c.object_kind == kind)).all()
    return {row.source_id: row.value_hash for row in rows}


def delete_identities(
    db: sa.Connection, pairing: Pairing, keys: list[tuple[str, str]]
) -> None:
    """Delete many identity rows in one driver call, inside the caller's transaction."""
    mark = "?" if db.dialect.paramstyle == "qmark" else "%s"
    bulk.executemany(
        db,
        "DELETE FROM identity_map WHERE source_connection_id = {m} AND destination_connection_id = {m} "
        "AND object_kind = {m} AND source_id = {m}".format(m=mark),
        [(pairing.source_connection_id, pairing.destination_connection_id, kind, source_id)
         for kind, source_id in keys],
    )


def release_identities(db: sa.Connection, pairing: Pairing, releases: list[Release]) -> None:
    """Delete the rows that still hold what each release expects, inside the caller's transaction."""
    if not releases:
        return
    mark = "?" if db.dialect.paramstyle == "qmark" else "%s"
    where = ("DELETE FROM identity_map WHERE source_connection_id = {m} AND destination_connection_id = {m} "
             "AND object_kind = {m} AND source_id = {m} AND ").format(m=mark)
    pair = (pairing.source_connection_id, pairing.destination_connection_id)
    linked = [(*pair, r.object_kind, r.source_id, r.dest_id) for r in releases if r.dest_id is not None]
    pending = [(*pair, r.object_kind, r.source_id) for r in releases if r.dest_id is None]
    if linked:
        bulk.executemany(db, where + f"dest_id = {mark}", linked)
    if pending:
        bulk.executemany(db, where + f"dest_id IS NULL AND state = '{PENDING}'", pending)


def claim_identity(db: sa.Connection, store: Store, pairing: Pairing, row: IdentityRow,
                   seen: IdentityRow | None) -> bool:
    """Write ``row`` only if the stored row is still ``seen`` (absent, when ``seen`` is None).

    A pending create is announced this way, so two runs that planned the same create
    cannot both believe they own it: the second finds the row changed and sends nothing.
    """
    source, dest = pairing.source_connection_id, pairing.destination_connection_id
    if seen is None:
        result = db.exec_driver_sql(
            INSERT_SQL.format(marks=bulk.marks(db, 10)) + "DO NOTHING",
            (source, dest, row.object_kind, row.source_id, row.dest_id, row.value_hash,
             bulk.json_value(db, row.value), row.state, bulk.json_value(db, row.natural_key), bulk.now_value(db)))
        return bool(result.rowcount)
    table = identity_map
    held = table.c.dest_id.is_(None) if seen.dest_id is None else table.c.dest_id == seen.dest_id
    result = db.execute(
        table.update()
        .where(table.c.source_connection_id == source, table.c.destination_connection_id == dest,
               table.c.object_kind == row.object_kind, table.c.source_id == row.source_id,
               held, table.c.state == seen.state)
        .values(dest_id=row.dest_id, value_hash=row.value_hash, value=row.value, state=row.state,
                natural_key=row.natural_key, updated_at=datetime.now(UTC)))
    return bool(result.rowcount)
