"""State reporting (seed 003) as use cases: send what changed, resync, change the preferences,
toggle the resource, and show where it all stands.

A send is a run of the state-reporting pipeline through the runs service. Before any run
is started, one cheap look decides whether anything can need sending: the export's
digest, the preferences and the event queue all as the last complete run left them, and
the ODS's change version where it was (or moved by no grading period or association),
means "nothing to do": no run, no parse, one request (a few when the version moved).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from passback.connectors.http import request_meter
from passback.connectors.registry import POSTED, RECORDS, kind_of
from passback.errors import Invalid
from passback.pipeline.edfi_sending import RESOURCE
from passback.pipeline.run import Progress, RunRequest, RunResult, RunScope
from passback.convert.edfi import sced_code
from passback.pipeline.statereport import (
    PREFS,
    StateReporter,
    preferences_from,
    preferences_settings,
    preferences_hash,
    preferences_mapping,
)
from passback.rules.edfi_rules import EdFiPreferences
from passback.services import runs
from passback.services.connections import load, open_state_reporting
from passback.settings import Settings
from passback.store.connections import connection_refs, update_settings
from passback.store.db import Store
from passback.store.events import pending
from passback.store.history import empty_counts
from passback.store.identity import Pairing, load_hashes

DESCRIPTOR_FORM = "uri://namespace/Descriptor#Code"


class StateReportingError(Invalid):
    pass


async def report(store: Store, settings: Settings, source: str | int, destination: str | int, *,
                 resync: bool = False, dry_run: bool = False, actor: str = "cli", wait_seconds: float = 0.0,
                 progress: Progress | None = None) -> RunResult:
    """Send what changed (or everything, ``resync``); ``progress`` hears (records answered, records planned)."""
    started = time.perf_counter()
    async with open_state_reporting(store, settings, source, destination) as (connectors, pairing):
        reporter = StateReporter(store, connectors.ods, pairing, connectors.prefs, concurrency=settings.concurrency)
        meter: Counter[str] = Counter()
        token = request_meter.set(meter)
        try:
            idle = not resync and await reporter.nothing_to_do(connectors.posted.digest(), dry_run)
        finally:
            request_meter.reset(token)
        if idle:
            return RunResult(None, "nothing to do", empty_counts(),
                             {"seconds": round(time.perf_counter() - started, 4), "requests": dict(meter)})
        request = RunRequest(pipeline="statereport", source_connection_id=pairing.source_connection_id,
                             destination_connection_id=pairing.destination_connection_id,
                             scope=RunScope(resource=RESOURCE), trigger="resync" if resync else "event", actor=actor,
                             dry_run=dry_run, resync=resync, wait_seconds=wait_seconds)
        return await runs.run(store, settings, request, connectors=connectors, progress=progress)


def check_descriptor(value: str) -> str:
    """A descriptor URI as Ed-Fi writes them, or an error showing the form."""
    if not value.startswith("uri://") or "#" not in value:
        raise StateReportingError(f"{value!r} is not a descriptor URI ({DESCRIPTOR_FORM}).")
    return value


def map_task(store: Store, settings: Settings, destination: str, task: str, grade_type: str,
             periods: list[str], *, final: bool = True, state_reported: bool = True) -> dict[str, Any]:
    """Map a grading task to a grade type and the grading periods it reports to, with the SIS's
    marks on the task: only a task marked 'final' and 'state reported' and mapped to 'FG' reports."""
    for value in [grade_type, *periods]:
        check_descriptor(value)
    return change_preferences(store, settings, destination, {
        "grade_types": {task: grade_type}, "grading_periods": {task: list(periods)},
        "tasks": {task: {"final": final, "state_reported": state_reported}}})


def unmap_task(store: Store, settings: Settings, destination: str, task: str) -> dict[str, Any]:
    """Take a grading task out of the mappings: its grades stop reporting, and the next sync (or
    resync) deletes the records they had in the ODS (seed 003: "no longer mapped and a resync")."""

    def edit(grades: dict[str, Any]) -> None:
        found = False
        for field in ("grade_types", "grading_periods", "tasks"):
            mapping = dict(grades.get(field) or {})
            found |= mapping.pop(task, None) is not None
            grades[field] = mapping
        if not found:
            raise StateReportingError(f"Grading task {task!r} is not mapped; see passback edfi status.")

    return _edit_grades(store, settings, destination, edit)


def map_subject(store: Store, settings: Settings, destination: str, code: str, descriptor: str) -> dict[str, Any]:
    """Map a SCED subject area code to the state's AcademicSubjectDescriptor (unmapped codes do not report)."""
    sced = sced_code(code)
    if sced is None:
        raise StateReportingError(f"{code!r} is not a SCED subject area code; they are numeric (e.g. 02).")
    return change_preferences(store, settings, destination,
                              {"subject_descriptors": {sced: check_descriptor(descriptor)}})


def adopt_preferences(store: Store, destination: str, prefs: EdFiPreferences) -> None:
    """Replace the Ed-Fi connection's Grades preferences with ``prefs`` (the sandbox's sample ones)."""
    update_settings(store, destination, {"grades": preferences_settings(prefs)})


def change_preferences(store: Store, settings: Settings, destination: str, change: dict[str, Any]) -> dict[str, Any]:
    """Merge a change into the Grades resource preferences; a mapping change asks for a resync."""

    def edit(grades: dict[str, Any]) -> None:
        for field, value in change.items():
            if isinstance(value, dict) and isinstance(grades.get(field), dict):
                grades[field] = {**grades[field], **value}
            else:
                grades[field] = value

    return _edit_grades(store, settings, destination, edit)


def _edit_grades(store: Store, settings: Settings, destination: str,
                 edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Load an Ed-Fi connection's Grades preferences, let ``edit`` change them, save them."""
    conn = load(store, settings, destination)
    if RECORDS not in kind_of(conn.kind).roles:
        raise StateReportingError(f"Connection {destination!r} is not an Ed-Fi connection.")
    current = dict(conn.settings)
    grades = dict(current.get("grades") or {})
    edit(grades)
    current["grades"] = grades
    update_settings(store, destination, current)
    return grades


TOGGLED = {
    (True, False): ("The Grades resource is now off: what was sent stays in the ODS, nothing new is sent, and "
                    "deletes wait for a sync with the resource on."),
    (False, True): ("The Grades resource is now on: the next sync sends what changed while it was off, the deletes "
                    "that waited included (passback edfi resync also repairs the identity map)."),
    (True, True): "The Grades resource was already on; nothing changed.",
    (False, False): "The Grades resource was already off; nothing changed.",
}


def toggle(store: Store, settings: Settings, destination: str, on: bool) -> dict[str, Any]:
    """Turn the Grades resource on or off, and say what that does to sent and waiting data."""
    was = preferences_from(load(store, settings, destination).settings).enabled
    change_preferences(store, settings, destination, {"enabled": on})
    return {"enabled": on, "was": was, "message": TOGGLED[(was, on)]}


async def status(store: Store, settings: Settings, source: str, destination: str) -> dict[str, Any]:
    """The toggle, every mapping, the pending events, and what a mapping change since the last
    send will rewrite (counted by a dry run, which writes nothing)."""
    conn = load(store, settings, destination)
    prefs = preferences_from(conn.settings)
    pairing = Pairing(load(store, settings, source).id, conn.id)
    waiting = pending(store, conn.id)
    sent = load_hashes(store, pairing, PREFS).get(RESOURCE)
    changed = sent is not None and sent != preferences_hash(prefs)
    replaced = None
    if changed:
        preview = await report(store, settings, source, destination, dry_run=True)
        replaced = preview.stats.get("planned_replacements")
    return {"enabled": prefs.enabled, "final_grade_type": prefs.final_grade_type,
            "mappings": preferences_mapping(prefs) | {"final_tasks": final_tasks(prefs)},
            "pending": {"events": len(waiting), "by_kind": dict(Counter(e.kind for e in waiting))},
            "mappings_changed": changed, "records_replaced": replaced}


def final_tasks(prefs: EdFiPreferences) -> list[str]:
    """The mapped tasks that report: marked final and state reported, mapped to the 'FG' grade type."""
    return sorted(task for task, grade_type in prefs.grade_types.items()
                  if grade_type == prefs.final_grade_type and task not in prefs.not_final_tasks)


def status_lines(shown: dict[str, Any]) -> list[str]:
    """The status as a person reads it: one line per fact, every mapping spelled out."""
    mappings = shown["mappings"]
    periods = mappings["grading_periods"]
    lines = [f"Grades resource: {'on' if shown['enabled'] else 'off'}",
             f"Final grade type ('FG', the only one reported): {shown['final_grade_type']}",
             "Grading tasks (grade type; grading periods):"]
    lines += [f"  {task}: {grade_type}; {', '.join(periods.get(task, [])) or 'no grading period'}"
              f"{'' if task in mappings['final_tasks'] else ' (not reported: not a final, state-reported FG task)'}"
              for task, grade_type in sorted(mappings["grade_types"].items())] or ["  none mapped"]
    codes = mappings["state_codes"]
    lines.append("State grade codes: " + (", ".join(f"{k}={v}" for k, v in sorted(codes.items())) or "none mapped"))
    lines.append("School years: " + (", ".join(str(y) for y in mappings["school_years"]) or "none configured"))
    subjects = mappings.get("subject_descriptors") or {}
    lines.append("Subject areas (SCED): " + (", ".join(f"{k}={v}" for k, v in sorted(subjects.items()))
                                              or "none mapped (not reported)"))
    kinds = shown["pending"]["by_kind"]
    lines.append(f"Pending events: {shown['pending']['events']}"
                 + (f" ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})" if kinds else ""))
    if shown["mappings_changed"]:
        lines.append(f"mappings changed since the last send: {shown['records_replaced']} records will be replaced "
                     "(by the next passback edfi sync or resync)")
    else:
        lines.append("mappings unchanged since the last send")
    return lines


def district_pair(store: Store) -> tuple[str | None, str | None]:
    """The district's state-reporting pair: (posted-grades source, ODS) by the roles their kinds play.

    A connection that only exports posted grades (a csv export) comes before a SIS that is also
    a gradebook; either is None when the district has none.
    """
    refs = connection_refs(store)
    ods = next((c.name for c in refs if RECORDS in kind_of(c.kind).roles), None)
    posted = sorted((c for c in refs if POSTED in kind_of(c.kind).roles), key=lambda c: len(kind_of(c.kind).roles))
    return (posted[0].name if posted else None), ods
