"""A OneRoster CSV connection: the path of the zip bundle the SIS or LMS exports (1.1 or 1.2)."""

from __future__ import annotations

from passback.connectors.config import ConnectionConfig


class OneRosterCsvConfig(ConnectionConfig):
    """Only a path: the bundle is a file, read whole on every run; it has no credentials."""

    kind = "oneroster_csv"
    label = "OneRoster CSV"
