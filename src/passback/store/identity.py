"""The identity map (M2): source id to destination id, and the value last written.

The value last written is what makes a sync incremental (unchanged values are not
sent) and what later lets passback notice a grade edited by hand in the destination.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from passback.store import bulk
from passback.store.db import Store
from passback.store.tables import identity_map

PENDING = "pending"
SYNCED = "synced"


@dataclass(frozen=True)
class IdentityRow:
    object_kind: str
    source_id: str
    dest_id: str | None
    value_hash: str | None
    value: Any
    state: str = SYNCED
    natural_key: Any = None


@dataclass(frozen=True)
class Pairing:
    """The two connections a sync moves grades between."""

    source_connection_id: int
    destination_connection_id: int


IdentityIndex = dict[tuple[str, str], IdentityRow]


def load_identities(
    store: Store, pairing: Pairing, kinds: tuple[str, ...], source_prefix: str | None = None
) -> IdentityIndex:
    """All identity rows of the pairing for these kinds, keyed by (kind, source id)."""
    query = sa.select(identity_map).where(
        identity_map.c.source_connection_id == pairing.source_connection_id,
        identity_map.c.destination_connection_id == pairing.destination_connection_id,
        identity_map.c.object_kind.in_(kinds),
    )
    if source_prefix is not None:
        query = query.where(identity_map.c.source_id.startswith(source_prefix, autoescape=True))
    with store.engine.connect() as db:
        rows = db.execute(query).all()
    return {
        (row.object_kind, row.source_id): IdentityRow(
            object_kind=row.object_kind,
            source_id=row.source_id,
            dest_id=row.dest_id,
            value_hash=row.value_hash,
            value=row.value,
            state=row.state,
            natural_key=row.natural_key,
        )
        for row in rows
    }


UPSERT_SQL = (
    "INSERT INTO identity_map (source_connection_id, destination_connection_id, object_kind, source_id, dest_id, "
    "value_hash, value, state, natural_key, updated_at) VALUES ({marks}) "
    "ON CONFLICT (source_connection_id, destination_connection_id, object_kind, source_id) DO UPDATE SET "
    "dest_id = excluded.dest_id, value_hash = excluded.value_hash, value = excluded.value, state = excluded.state, "
    "natural_key = excluded.natural_key, updated_at = excluded.updated_at"
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
    return {source_id: orjson.loads(text) for source_id, text in rows if text is not None}


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
