"""Many rows in one driver call: the store's hot writes, on SQLite and PostgreSQL alike.

SQLAlchemy's per-row parameter processing costs more than the database's own work when
a run writes tens of thousands of identity rows and run items; here the rows go to the
driver's ``executemany`` as tuples, JSON already serialized, timestamps already formatted.
Plain appends (run items, the audit log) go to PostgreSQL by ``COPY``, which costs the
worker a fraction of ``executemany``'s CPU per row (no statement per row, no parameter
binding); SQLite takes them by ``executemany``.
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


def insert_rows(db: sa.Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]],
                json_columns: frozenset[str] = frozenset()) -> None:
    """Append rows to ``table`` (a name of ours, never input). ``json_columns`` take Python values
    (None is SQL NULL); the rest are given as the column takes them."""
    if not rows:
        return
    json_at = [i for i, name in enumerate(columns) if name in json_columns]
    if db.dialect.name == "postgresql":
        def text(value: Any) -> str | None:
            return None if value is None else orjson.dumps(value).decode()

        raw = db.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                if json_at:
                    row = tuple(text(v) if i in json_at else v for i, v in enumerate(row))
                copy.write_row(row)
        return
    converted = [tuple(json_value(db, v) if i in json_at else v for i, v in enumerate(row)) for row in rows] \
        if json_at else list(rows)
    db.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks(db, len(columns))})", converted)
