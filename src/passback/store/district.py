"""The district's settings as changed in the web product: one row per key, its JSON value, who and when.

Key/value rather than a column per setting: a new setting needs no migration, and each
row says who last changed that one setting. The typed model and its defaults are in
:mod:`passback.services.district`; a key no longer known there is ignored, not an error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from passback.store.db import Store
from passback.store.tables import district_settings


def read_values(store: Store) -> dict[str, Any]:
    """Every stored setting: key -> value."""
    with store.engine.connect() as db:
        return {row.key: row.value for row in db.execute(sa.select(district_settings.c.key, district_settings.c.value))}


def read_rows(store: Store) -> list[dict[str, Any]]:
    """Every stored setting with who changed it and when (UTC), by key."""
    with store.engine.connect() as db:
        rows = [dict(row._mapping) for row in db.execute(sa.select(district_settings).order_by(district_settings.c.key))]
    for row in rows:
        if row["updated_at"].tzinfo is None:
            row["updated_at"] = row["updated_at"].replace(tzinfo=UTC)
    return rows


def write_values(store: Store, values: dict[str, Any], *, actor: str) -> None:
    """Store these keys' values in one transaction (each row created or replaced)."""
    now = datetime.now(UTC)
    with store.transaction() as db:
        if db.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        for key, value in values.items():
            statement = insert(district_settings).values(key=key, value=value, actor=actor[:100], updated_at=now)
            db.execute(statement.on_conflict_do_update(  # one statement: two admins saving at once cannot clash
                index_elements=[district_settings.c.key],
                set_={"value": statement.excluded.value, "actor": statement.excluded.actor,
                      "updated_at": statement.excluded.updated_at}))
