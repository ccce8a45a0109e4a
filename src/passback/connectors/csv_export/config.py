"""A posted-grades export: the path of the CSV file the SIS writes."""

from __future__ import annotations

from passback.connectors.config import ConnectionConfig


class CsvExportConfig(ConnectionConfig):
    kind = "csv"
    label = "CSV export"
