"""Saved connections to sources and destinations, with credentials encrypted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from passback.errors import NotFound
from passback.store.db import Store
from passback.store.tables import connections
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
    """Create or replace the connection called ``name``."""
    values = {
        "kind": kind,
        "base_url": base_url.rstrip("/"),
        "credentials": encrypt(credentials, key),
        "settings": settings or {},
    }
    with store.transaction() as db:
        existing = db.execute(
            sa.select(connections.c.id).where(connections.c.name == name)
        ).scalar_one_or_none()
        if existing is None:
            db.execute(
                connections.insert().values(name=name, created_at=datetime.now(UTC), **values)
            )
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
