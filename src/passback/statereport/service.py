"""Running state reporting from saved connections: the export, the ODS, the store."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from passback.connectors.edfi.client import EdFiClient
from passback.settings import Settings
from passback.statereport.csv_source import PostedExport, export_digest, read_export
from passback.statereport.engine import StateReporter, StateRun, preferences_from
from passback.store.connections import Connection, get_connection, update_settings
from passback.store.db import Store
from passback.store.history import empty_counts
from passback.store.identity import Pairing
from passback.vault import load_key


class StateReportingError(ValueError):
    pass


def _connections(store: Store, settings: Settings, source: str, destination: str) -> tuple[Connection, Connection]:
    key = load_key(settings)
    source_conn, dest_conn = get_connection(store, key, source), get_connection(store, key, destination)
    if source_conn.kind not in ("csv", "powerschool"):
        raise StateReportingError(f"Connection {source!r} is a {source_conn.kind} connection; posted grades are read "
                                  "from a csv export (passback connect csv --name N --url PATH) or from PowerSchool.")
    if dest_conn.kind != "edfi":
        raise StateReportingError(f"Connection {destination!r} is not an Ed-Fi connection.")
    return source_conn, dest_conn


async def read_posted(source: Connection, settings: Settings) -> PostedExport:
    """Posted grades from a CSV export or from PowerSchool's stored grades."""
    if source.kind == "csv":
        return read_export(Path(source.base_url))
    from passback.connectors.powerschool.destination import PowerSchoolClient
    from passback.connectors.powerschool.posted import PowerSchoolPostedGrades

    client = PowerSchoolClient(source.base_url, source.credentials["client_id"], source.credentials["client_secret"],
                               concurrency=settings.concurrency, timeout=settings.http_timeout)
    try:
        return await PowerSchoolPostedGrades(client).read()
    finally:
        await client.aclose()


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection during a run.

    A run holds a few hundred thousand long-lived objects (the export's rows, the
    associations, the plan) and makes no reference cycles worth collecting, yet the
    collector's full passes over them cost a fifth of a 20,000-grade send.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def report(store: Store, settings: Settings, source: str, destination: str, *, resync: bool = False,
                 dry_run: bool = False) -> StateRun:
    with collection_paused():
        return await _report(store, settings, source, destination, resync=resync, dry_run=dry_run)


async def _report(store: Store, settings: Settings, source: str, destination: str, *, resync: bool,
                  dry_run: bool) -> StateRun:
    started = time.perf_counter()
    source_conn, dest_conn = _connections(store, settings, source, destination)
    client = EdFiClient(dest_conn.base_url, dest_conn.credentials["client_id"], dest_conn.credentials["client_secret"],
                        concurrency=settings.concurrency, timeout=settings.http_timeout)
    try:
        reporter = StateReporter(store, client, Pairing(source_conn.id, dest_conn.id),
                                 preferences_from(dest_conn.settings), concurrency=settings.concurrency)
        digest = export_digest(Path(source_conn.base_url)) if source_conn.kind == "csv" else None
        if not resync and reporter.unchanged_since_last_run(digest):
            return StateRun(None, "nothing to do", empty_counts(),
                            {"seconds": round(time.perf_counter() - started, 4), "requests": {}})
        export = await read_posted(source_conn, settings)
        result = await reporter.run(export, resync=resync, dry_run=dry_run)
        if not dry_run and result.status in ("succeeded", "nothing to do", "completed_with_errors"):
            reporter.remember_export(digest)
    finally:
        await client.aclose()
    result.problems = [p.message for p in export.problems]
    return result


def change_preferences(store: Store, settings: Settings, destination: str, change: dict[str, Any]) -> dict[str, Any]:
    """Merge a change into the Grades resource preferences; a mapping change asks for a resync."""
    conn = get_connection(store, load_key(settings), destination)
    if conn.kind != "edfi":
        raise StateReportingError(f"Connection {destination!r} is not an Ed-Fi connection.")
    current = dict(conn.settings)
    grades = dict(current.get("grades") or {})
    for field, value in change.items():
        if isinstance(value, dict) and isinstance(grades.get(field), dict):
            grades[field] = {**grades[field], **value}
        else:
            grades[field] = value
    current["grades"] = grades
    update_settings(store, destination, current)
    return grades
