"""From a saved connection to a live connector: the one place that knows every kind."""

from __future__ import annotations

from passback.connectors.base import Destination, Source
from passback.store.connections import Connection

SOURCE_KINDS = ("canvas", "schoology")
DESTINATION_KINDS = ("powerschool",)


class UnsupportedConnection(ValueError):
    pass


def open_source(connection: Connection, concurrency: int = 8, timeout: float = 30.0) -> Source:
    if connection.kind == "canvas":
        from passback.connectors.canvas.client import CanvasClient
        from passback.connectors.canvas.source import CanvasSource

        return CanvasSource(CanvasClient(connection.base_url, connection.credentials["token"],
                                         concurrency=concurrency, timeout=timeout))
    if connection.kind == "schoology":
        from passback.connectors.schoology.client import SchoologyClient
        from passback.connectors.schoology.source import SchoologySource

        return SchoologySource(SchoologyClient(connection.base_url, connection.credentials["consumer_key"],
                                               connection.credentials["consumer_secret"],
                                               concurrency=concurrency, timeout=timeout))
    raise UnsupportedConnection(
        f"Connection {connection.name!r} is a {connection.kind} connection, which cannot be read "
        f"from; sources are: {', '.join(SOURCE_KINDS)}."
    )


def open_destination(connection: Connection, concurrency: int = 8, timeout: float = 30.0) -> Destination:
    if connection.kind == "powerschool":
        from passback.connectors.powerschool.destination import PowerSchoolClient, PowerTeacherProDestination

        client = PowerSchoolClient(connection.base_url, connection.credentials["client_id"],
                                   connection.credentials["client_secret"], concurrency=concurrency,
                                   timeout=timeout)
        return PowerTeacherProDestination(client)
    raise UnsupportedConnection(
        f"Connection {connection.name!r} is a {connection.kind} connection, which cannot be written "
        f"to; destinations are: {', '.join(DESTINATION_KINDS)}."
    )
