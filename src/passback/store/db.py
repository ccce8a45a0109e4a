"""Opening the store: one engine for SQLite or PostgreSQL, and the write discipline of both.

Several processes may share one store (the CLI, the server, workers). Every write goes
through :meth:`Store.transaction`, short and whole:

* SQLite: a write transaction starts with ``BEGIN IMMEDIATE``, so it takes the writer's
  lock before it reads and never has to upgrade a read lock (which SQLite refuses at
  once, busy timeout or not); a writer of another process waits up to the busy timeout
  (30 s). Writers of one process also take turns on a thread lock first: SQLite's busy
  handler waits by sleeping in growing steps, and a run's concurrent recorders (one per
  course, each on a worker thread) doubled the store's time when they met there.
* PostgreSQL: plain transactions; rows that must be claimed once (a queued run) are
  claimed by a conditional UPDATE, which the server serializes with row locks.

Migrations run once, not on every open: ``passback db upgrade``, or the first use by the
CLI, the server or a worker when the store is behind. Two processes upgrading at once
are serialized (an advisory lock on PostgreSQL, the writer's lock on SQLite).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from passback.errors import Unavailable
from passback.settings import Settings, get_settings

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 7_361_002  # the advisory lock id PostgreSQL upgrades take
BUSY_TIMEOUT_SECONDS = 30


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_SECONDS})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None  # passback says BEGIN itself (below)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # A run writes tens of thousands of rows in batches; folding the log into the
            # database every 4 MB (the default) put a checkpoint in the middle of most batches.
            cursor.execute("PRAGMA wal_autocheckpoint=16384")
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:  # type: ignore[no-untyped-def]
            immediate = connection.get_execution_options().get("passback_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, pool_pre_ping=True)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision, one process at a time; a no-op when it is there."""
    config = _alembic_config()
    with engine.connect() as connection:
        connection = connection.execution_options(passback_write=True)
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")


def needs_upgrade(engine: sa.Engine) -> bool:
    return current_revision(engine) != head_revision()


@dataclass
class Store:
    """The engine, and the one way to write: :meth:`transaction`."""

    engine: sa.Engine
    _turns: threading.Lock | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self._turns = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A short write transaction: committed on leaving, rolled back on an exception."""
        with self._turns or nullcontext(), self.engine.connect() as connection:
            connection = connection.execution_options(passback_write=True)
            with connection.begin():
                yield connection

    def dispose(self) -> None:
        self.engine.dispose()


def _owner_only(database: Path) -> None:
    """The SQLite store and its journal files are readable by their owner only (grades, history)."""
    if not database.parent.is_dir():
        return
    database.touch(mode=0o600, exist_ok=True)
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)


class StoreUnavailable(Unavailable):
    """The store cannot be opened; the message names the database and the fix."""


def _shown(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True) if "://" in url else url


def open_store(settings: Settings | None = None, url: str | None = None, *, upgrade: bool = True) -> Store:
    """The store, upgraded first when it is behind (``upgrade``); else an error naming the command."""
    settings = settings or get_settings()
    if url is None:
        url = settings.resolved_database_url()
        if url.startswith("sqlite"):
            settings.ensure_data_dir()
    if url.startswith("sqlite:///"):
        _owner_only(Path(url.removeprefix("sqlite:///")))
    try:
        engine = make_engine(url)
        if needs_upgrade(engine):
            if not upgrade:
                raise StoreUnavailable(
                    f"The store at {_shown(url)} is not at this version's schema. Run `passback db upgrade`.")
            migrate(engine)
    except (sa.exc.DatabaseError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if "not a database" in reason or "malformed" in reason:
            raise StoreUnavailable(
                f"The store at {_shown(url)} is damaged ({reason}). Move it aside and restore the newest backup, "
                "or move it aside and start afresh (connections must then be saved again).") from exc
        raise StoreUnavailable(
            f"Cannot open the store at {_shown(url)}: {reason}. Check PASSBACK_DATABASE_URL "
            "(or unset it to use the SQLite store in the data directory) and that the database server is up."
        ) from exc
    return Store(engine)
