"""State reporting (seed 003) as use cases: send what changed, resync, change the preferences.

A send is a run of the state-reporting pipeline through the runs service. Before any run
is started, one cheap look decides whether anything can need sending: the export's
digest, the preferences and the event queue all as the last complete run left them
means "nothing to do", with no run, no parse and no request.
"""

from __future__ import annotations

import time
from typing import Any

from passback.connectors.registry import RECORDS, kind_of
from passback.errors import Invalid
from passback.pipeline.edfi_sending import RESOURCE
from passback.pipeline.run import RunRequest, RunResult, RunScope
from passback.pipeline.statereport import StateReporter
from passback.services import runs
from passback.services.connections import load, open_state_reporting
from passback.settings import Settings
from passback.store.connections import update_settings
from passback.store.db import Store
from passback.store.history import empty_counts

DESCRIPTOR_FORM = "uri://namespace/Descriptor#Code"


class StateReportingError(Invalid):
    pass


async def report(store: Store, settings: Settings, source: str | int, destination: str | int, *,
                 resync: bool = False, dry_run: bool = False, actor: str = "cli", wait_seconds: float = 0.0) -> RunResult:
    started = time.perf_counter()
    async with open_state_reporting(store, settings, source, destination) as (connectors, pairing):
        reporter = StateReporter(store, connectors.ods, pairing, connectors.prefs, concurrency=settings.concurrency)
        if not resync and reporter.unchanged_since_last_run(connectors.posted.digest()):
            return RunResult(None, "nothing to do", empty_counts(),
                             {"seconds": round(time.perf_counter() - started, 4), "requests": {}})
        request = RunRequest(pipeline="statereport", source_connection_id=pairing.source_connection_id,
                             destination_connection_id=pairing.destination_connection_id,
                             scope=RunScope(resource=RESOURCE), trigger="resync" if resync else "event", actor=actor,
                             dry_run=dry_run, resync=resync, wait_seconds=wait_seconds)
        return await runs.run(store, settings, request, connectors=connectors)


def check_descriptor(value: str) -> str:
    """A descriptor URI as Ed-Fi writes them, or an error showing the form."""
    if not value.startswith("uri://") or "#" not in value:
        raise StateReportingError(f"{value!r} is not a descriptor URI ({DESCRIPTOR_FORM}).")
    return value


def map_task(store: Store, settings: Settings, destination: str, task: str, grade_type: str,
             periods: list[str]) -> dict[str, Any]:
    """Map a grading task to a grade type and the grading periods it reports to."""
    for value in [grade_type, *periods]:
        check_descriptor(value)
    return change_preferences(store, settings, destination,
                              {"grade_types": {task: grade_type}, "grading_periods": {task: list(periods)}})


def change_preferences(store: Store, settings: Settings, destination: str, change: dict[str, Any]) -> dict[str, Any]:
    """Merge a change into the Grades resource preferences; a mapping change asks for a resync."""
    conn = load(store, settings, destination)
    if RECORDS not in kind_of(conn.kind).roles:
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
