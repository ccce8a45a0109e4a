"""Saved connections: save one from what a person gave, list them, open their connectors.

The one place that turns a stored connection into a live connector: the CLI, the REST API
and the workers all come through here, by name or by id.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from passback.connectors.base import Destination, PostedGradesSource, RecordsDestination, Source
from passback.connectors.config import ConnectionConfig
from passback.connectors.limits import SharedLimits
from passback.connectors.memory import process_memory
from passback.connectors.registry import (
    DESTINATION,
    POSTED,
    RECORDS,
    SOURCE,
    HttpOptions,
    kind_of,
    open_connector,
)
from passback.errors import Conflict, ErrorKind, Invalid, NotFound, PassbackError, Unavailable
from passback.pipeline.gradebook import GradebookConnectors
from passback.pipeline.statereport import StateReportConnectors, preferences_from
from passback.settings import Settings
from passback.store.connections import (
    Connection,
    UnknownConnection,
    get_connection,
    get_connection_by_id,
    kind_of_saved,
    remove_connection,
    save_connection,
)
from passback.store.db import Store
from passback.store.identity import Pairing
from passback.vault import load_key


def shared_limits(settings: Settings) -> SharedLimits | None:
    """The caps per destination every worker shares, when Redis is configured (``PASSBACK_REDIS_URL``).

    Without a rate or a shared count of its own, a destination gets ``concurrency`` in flight
    across all workers: what one process allowed alone, so adding workers never adds load.
    """
    if not settings.redis_url:
        return None
    return SharedLimits(settings.redis_url, concurrency=settings.destination_concurrency or settings.concurrency,
                        rate=settings.destination_rate)


def http_options(settings: Settings) -> HttpOptions:
    return HttpOptions(concurrency=settings.concurrency, timeout=settings.http_timeout, limits=shared_limits(settings),
                       memory=process_memory())


def config_of(connection: Connection) -> ConnectionConfig:
    return kind_of(connection.kind).config.parse(connection.base_url, connection.credentials)


async def probe(kind: str, url: str, credentials: dict[str, Any], settings: Settings) -> str:
    """One real request with these values: what it showed, or an error naming the URL and the fix."""
    connector_kind = kind_of(kind)
    config = connector_kind.config.parse(url, credentials)
    try:
        return await connector_kind.probe(config, http_options(settings))
    except PassbackError as exc:
        same_kind = {ErrorKind.NOT_FOUND: NotFound, ErrorKind.INVALID: Invalid, ErrorKind.UNAVAILABLE: Unavailable,
                     ErrorKind.CONFLICT: Conflict}[exc.kind]
        raise same_kind(f"Checking {config.url} failed, so the connection was not saved: {exc} "
                        "(--no-check saves it without trying)") from exc
    except (OSError, ValueError) as exc:  # an unreachable host, a malformed URL
        raise Unavailable(f"Cannot reach {config.url} ({exc.__class__.__name__}: {exc}); check the URL and that "
                          "the server is up. The connection was not saved (--no-check saves it without trying).") from exc


def save(store: Store, settings: Settings, *, name: str, kind: str, url: str,
         credentials: dict[str, Any], replace: bool = False) -> Connection:
    """Check the values against the kind's config, then save (credentials encrypted).

    Saving over an existing name must be asked for (``replace``), and keeps its kind: the
    run history of a connection names it, so a name never changes what it is.
    """
    config = kind_of(kind).config.parse(url, credentials)
    existing = kind_of_saved(store, name)
    if existing is not None and not replace:
        raise Conflict(f"A connection named {name!r} exists already; add --replace to save over it "
                       "(its history and settings stay), or choose another name.")
    if existing is not None and existing != kind:
        raise Conflict(f"Connection {name!r} is a {existing} connection; it cannot become a {kind} one. "
                       "Choose another name.")
    return save_connection(store, load_key(settings), name=name, kind=kind, base_url=config.url,
                           credentials=config.credentials())


async def test_saved(store: Store, settings: Settings, name: str) -> str:
    """One real request with a saved connection's URL and credentials (an admin page's "test" button)."""
    connection = load(store, settings, name)
    connector_kind = kind_of(connection.kind)
    config = connector_kind.config.parse(connection.base_url, connection.credentials)
    try:
        return await connector_kind.probe(config, http_options(settings))
    except (OSError, ValueError) as exc:
        raise Unavailable(f"Cannot reach {config.url} ({exc.__class__.__name__}); check the URL and that the "
                          "server is up, then save the connection again with the right values.") from exc


def remove(store: Store, name: str) -> None:
    remove_connection(store, name)


def load(store: Store, settings: Settings, name_or_id: str | int) -> Connection:
    if isinstance(name_or_id, str) and kind_of_saved(store, name_or_id) is None:
        raise UnknownConnection(f"No connection named {name_or_id!r}. List them with `passback connections` "
                                "or create one with `passback connect`.")
    key = load_key(settings, create=False)
    if isinstance(name_or_id, int):
        return get_connection_by_id(store, key, name_or_id)
    return get_connection(store, key, name_or_id)


def open_role(connection: Connection, role: str, settings: Settings) -> Any:
    return open_connector(role, config_of(connection), http_options(settings), connection.name)


@dataclass(frozen=True)
class Route:
    """A source connection and a gradebook destination connection, by name or id."""

    source: str | int
    destination: str | int


@dataclass
class OpenRoute:
    """A source and a gradebook destination, opened, with their pairing."""

    source: Source
    destination: Destination
    pairing: Pairing

    @property
    def connectors(self) -> GradebookConnectors:
        return GradebookConnectors(self.source, self.destination)


@contextlib.asynccontextmanager
async def open_route(store: Store, settings: Settings, route: Route) -> AsyncIterator[OpenRoute]:
    """The two connectors of a gradebook route and their pairing, closed on the way out."""
    source_conn, dest_conn = load(store, settings, route.source), load(store, settings, route.destination)
    opened_source: Source = open_role(source_conn, SOURCE, settings)
    try:
        opened_destination: Destination = open_role(dest_conn, DESTINATION, settings)
    except BaseException:
        await opened_source.aclose()
        raise
    try:
        yield OpenRoute(opened_source, opened_destination, Pairing(source_conn.id, dest_conn.id))
    finally:
        await opened_source.aclose()
        await opened_destination.aclose()


@contextlib.asynccontextmanager
async def open_state_reporting(store: Store, settings: Settings, source: str | int,
                               destination: str | int) -> AsyncIterator[tuple[StateReportConnectors, Pairing]]:
    """The posted-grades source, the ODS and the Grades preferences, closed on the way out."""
    source_conn, dest_conn = load(store, settings, source), load(store, settings, destination)
    if RECORDS not in kind_of(dest_conn.kind).roles:  # read the roles, never a kind
        raise Invalid(f"Connection {dest_conn.name!r} is not an Ed-Fi connection.")
    if POSTED not in kind_of(source_conn.kind).roles:
        raise Invalid(f"Connection {source_conn.name!r} is a {source_conn.kind} connection; posted grades are read "
                      "from a csv export (passback connect csv --name N --url PATH) or from PowerSchool.")
    posted: PostedGradesSource = open_role(source_conn, POSTED, settings)
    ods: RecordsDestination = open_role(dest_conn, RECORDS, settings)
    try:
        yield (StateReportConnectors(posted, ods, preferences_from(dest_conn.settings)),
               Pairing(source_conn.id, dest_conn.id))
    finally:
        await posted.aclose()
        await ods.aclose()
