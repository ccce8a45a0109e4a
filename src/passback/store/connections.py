"""Saved connections to sources and destinations, with credentials encrypted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from passback.errors import Conflict, NotFound
from passback.store.db import Store
from passback.store.tables import (
    assignment_switches,
    category_mappings,
    connections,
    edfi_events,
    identity_map,
    leases,
    live_events,
    match_overrides,
    match_rules,
    runs,
    setup_changes,
)
from passback.vault import decrypt, encrypt


@dataclass(frozen=True)
class Connection:
    id: int
    name: str
    kind: str
    base_url: str
    credentials: dict[str, str] = field(repr=False)
    settings: dict[str, Any]


class UnknownConnection(NotFound):
    pass


def save_connection(
    store: Store,
    key: bytes,
    *,
    name: str,
    kind: str,
    base_url: str,
    credentials: dict[str, str],
    settings: dict[str, Any] | None = None,
) -> Connection:
    """Create or replace the connection called ``name`` (a replaced one keeps its id, history and
    settings unless new settings are given)."""
    values: dict[str, Any] = {
        "kind": kind,
        "base_url": base_url.rstrip("/"),
        "credentials": encrypt(credentials, key),
    }
    if settings is not None:
        values["settings"] = settings
    with store.transaction() as db:
        existing = db.execute(
            sa.select(connections.c.id).where(connections.c.name == name)
        ).scalar_one_or_none()
        if existing is None:
            db.execute(connections.insert().values(name=name, created_at=datetime.now(UTC),
                                                   **{"settings": {}, **values}))
        else:
            db.execute(connections.update().where(connections.c.id == existing).values(**values))
    return get_connection(store, key, name)


def get_connection(store: Store, key: bytes, name: str) -> Connection:
    with store.engine.connect() as db:
        row = db.execute(sa.select(connections).where(connections.c.name == name)).one_or_none()
    if row is None:
        raise UnknownConnection(
            f"No connection named {name!r}. List them with `passback connections` "
            "or create one with `passback connect`."
        )
    return _connection(row, key)


def get_connection_by_id(store: Store, key: bytes, connection_id: int) -> Connection:
    with store.engine.connect() as db:
        row = db.execute(sa.select(connections).where(connections.c.id == connection_id)).one_or_none()
    if row is None:
        raise UnknownConnection(f"No connection with id {connection_id}; it may have been removed.")
    return _connection(row, key)


def _connection(row: sa.Row, key: bytes) -> Connection:  # type: ignore[type-arg]
    return Connection(
        id=row.id,
        name=row.name,
        kind=row.kind,
        base_url=row.base_url,
        credentials=decrypt(row.credentials, key),
        settings=row.settings,
    )


def list_connections(store: Store) -> list[dict[str, Any]]:
    """Connections without their credentials: safe to print."""
    with store.engine.connect() as db:
        rows = db.execute(
            sa.select(connections.c.name, connections.c.kind, connections.c.base_url).order_by(
                connections.c.name
            )
        ).all()
    return [dict(row._mapping) for row in rows]


def update_settings(store: Store, name: str, settings: dict[str, Any]) -> None:
    """Replace a connection's settings (not its credentials)."""
    with store.transaction() as db:
        result = db.execute(connections.update().where(connections.c.name == name).values(settings=settings))
    if result.rowcount == 0:
        raise UnknownConnection(f"No connection named {name!r}. Create one with `passback connect`.")


def kind_of_saved(store: Store, name: str) -> str | None:
    """The kind of the connection called ``name``, or None when there is none."""
    with store.engine.connect() as db:
        return db.execute(sa.select(connections.c.kind).where(connections.c.name == name)).scalar_one_or_none()


def remove_connection(store: Store, name: str) -> None:
    """Remove a connection and what passback kept for it alone (links, mappings, queues).

    A connection with run history stays: the history is kept forever and names it.
    """
    with store.transaction() as db:
        found = db.execute(sa.select(connections.c.id).where(connections.c.name == name)).scalar_one_or_none()
        if found is None:
            raise UnknownConnection(f"No connection named {name!r}. List them with `passback connections`.")
        used = db.execute(sa.select(sa.func.count()).select_from(runs).where(
            sa.or_(runs.c.source_connection_id == found, runs.c.destination_connection_id == found))).scalar_one()
        if used:
            raise Conflict(
                f"Connection {name!r} has run history ({used} run(s)), which is kept and names it, so it cannot "
                "be removed. To change its URL or credentials, save over it with `passback connect ... --replace`.")
        for table in (identity_map, category_mappings, match_rules, match_overrides, setup_changes):
            db.execute(table.delete().where(sa.or_(table.c.source_connection_id == found,
                                                   table.c.destination_connection_id == found)))
        db.execute(assignment_switches.delete().where(assignment_switches.c.source_connection_id == found))
        db.execute(live_events.delete().where(live_events.c.source_connection_id == found))
        for column in [c for c in edfi_events.c if c.name.endswith("connection_id")]:
            db.execute(edfi_events.delete().where(column == found))
        db.execute(leases.delete().where(leases.c.key.like(f"%:{found}:%") | leases.c.key.like(f"ods:{found}")))
        db.execute(connections.delete().where(connections.c.id == found))


@dataclass(frozen=True)
class ConnectionRef:
    """A connection without its credentials: what pages and routes carry around."""

    id: int
    name: str
    kind: str
    base_url: str


def connection_refs(store: Store) -> list[ConnectionRef]:
    with store.engine.connect() as db:
        rows = db.execute(sa.select(connections.c.id, connections.c.name, connections.c.kind,
                                    connections.c.base_url).order_by(connections.c.name)).all()
    return [ConnectionRef(row.id, row.name, row.kind, row.base_url) for row in rows]
