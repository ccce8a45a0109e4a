"""Many rows in one driver call: the store's hot writes, on SQLite and PostgreSQL alike.

SQLAlchemy's per-row parameter processing costs more than the database's own work when
a run writes tens of thousands of identity rows and run items; here the rows go to the
driver's ``executemany`` as tuples, JSON already serialized, timestamps already formatted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa


def marks(db: sa.Connection, count: int) -> str:
    mark = "?" if db.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * count)


def now_value(db: sa.Connection) -> Any:
    return timestamp_value(db, datetime.now(UTC))


def timestamp_value(db: sa.Connection, value: datetime) -> Any:
    """A timestamp for raw SQL, as SQLAlchemy itself stores it (text on SQLite) and parses it back."""
    if db.dialect.name == "sqlite":
        return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def json_value(db: sa.Connection, value: Any) -> Any:
    if value is None:
        return None
    text = orjson.dumps(value).decode()
    if db.dialect.name == "postgresql":
        from psycopg.types.json import Json

        return Json(value, dumps=lambda v: text)
    return text


def executemany(db: sa.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        db.exec_driver_sql(sql, list(rows))
