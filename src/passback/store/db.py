"""Opening the store: one engine, migrated to head, for SQLite or PostgreSQL alike."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from passback.settings import Settings, get_settings

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # A run writes tens of thousands of rows in batches; folding the log into the
            # database every 4 MB (the default) put a checkpoint in the middle of most batches.
            cursor.execute("PRAGMA wal_autocheckpoint=16384")
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, pool_pre_ping=True)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision; safe to call on every start."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@dataclass
class Store:
    """The engine, and one lock that serializes this process's writes.

    SQLite admits one writer at a time and makes the others sleep-and-retry; taking
    turns in-process is cheaper than that, and costs PostgreSQL nothing that matters.
    """

    engine: sa.Engine
    write_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def dispose(self) -> None:
        self.engine.dispose()


class StoreUnavailable(RuntimeError):
    """The store cannot be opened; the message names the database and the fix."""


def open_store(settings: Settings | None = None, url: str | None = None) -> Store:
    settings = settings or get_settings()
    if url is None:
        url = settings.resolved_database_url()
        if url.startswith("sqlite"):
            settings.ensure_data_dir()
    try:
        engine = make_engine(url)
        migrate(engine)
    except (sa.exc.OperationalError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StoreUnavailable(
            f"Cannot open the store at {shown}: {reason}. Check PASSBACK_DATABASE_URL "
            "(or unset it to use the SQLite store in the data directory) and that the database server is up."
        ) from exc
    return Store(engine)
