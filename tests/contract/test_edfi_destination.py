"""Ed-Fi records destination (D2) against the Ed-Fi emulator: the shared records contract,
and retries of server errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any

import pytest

from passback.connectors.edfi.client import PAGE, EdFiClient
from passback.connectors.edfi.destination import EdFiDestination
from passback.convert.edfi import grade_records, natural_key
from passback.emulators import edfi as edfi_emulator
from passback.model import GradingPeriod, PostedGrade, SectionAssociation
from passback.sandbox.edfi_district import PERIOD, EdFiShape, default_preferences, generate
from passback.testing.records import RecordsDestinationContract
from tests.conftest import ServedApp

CLIENT_ID, CLIENT_SECRET = "sandbox-edfi", "sandbox-edfi-secret"
GRADES = PAGE + 30  # more grades than one page of a listing


@pytest.fixture
def ods() -> Iterator[tuple[ServedApp, list[PostedGrade]]]:
    state, grades = generate(EdFiShape(grades=GRADES, students_per_section=25))
    with ServedApp(edfi_emulator.create_app(state)) as served:
        yield served, grades


@pytest.fixture
def served(ods: tuple[ServedApp, list[PostedGrade]]) -> ServedApp:
    return ods[0]


@pytest.fixture
async def records_destination(served: ServedApp) -> AsyncIterator[EdFiDestination]:
    client = EdFiClient(served.url, CLIENT_ID, CLIENT_SECRET, concurrency=4)
    destination = EdFiDestination(client)
    try:
        yield destination
    finally:
        await destination.aclose()


def _period(state: dict[str, Any], name: str) -> GradingPeriod:
    row = next(r for r in state["resources"]["gradingPeriods"].values() if r["gradingPeriodName"] == name)
    return GradingPeriod(descriptor=row["gradingPeriodDescriptor"], name=row["gradingPeriodName"],
                         school_id=str(row["schoolReference"]["schoolId"]),
                         school_year=int(row["schoolYearTypeReference"]["schoolYear"]),
                         begin=date.fromisoformat(row["beginDate"]), end=date.fromisoformat(row["endDate"]))


def _association(state: dict[str, Any], grade: PostedGrade) -> SectionAssociation:
    row = next(r for r in state["resources"]["studentSectionAssociations"].values()
               if r["studentReference"]["studentUniqueId"] == grade.student_id
               and r["sectionReference"]["sectionIdentifier"] == grade.section_id)
    section = row["sectionReference"]
    return SectionAssociation(student_id=grade.student_id, section_id=section["sectionIdentifier"],
                              local_course_code=section["localCourseCode"], school_id=str(section["schoolId"]),
                              school_year=int(section["schoolYear"]), session_name=section["sessionName"],
                              begin_date=date.fromisoformat(row["beginDate"]))


def grade_record(state: dict[str, Any], grade: PostedGrade) -> dict[str, Any]:
    """The one Grade record a posted semester final becomes, built as the pipeline builds it."""
    prefs = default_preferences()
    periods = [_period(state, name) for name in ("First Semester",)]
    assert prefs.grading_periods[grade.grading_task] == (PERIOD + "First Semester",)
    (record,) = grade_records(grade, prefs, _association(state, grade), periods)
    return record


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


@pytest.fixture
def record_case(ods: tuple[ServedApp, list[PostedGrade]]) -> dict[str, Any]:
    served, grades = ods
    state = served.state
    first = grades[0]
    record = grade_record(state, first)
    other_letter = "A" if first.letter != "A" else "B"
    changed = grade_record(state, first.model_copy(update={"letter": other_letter}))
    assert natural_key(changed) == natural_key(record) and changed != record
    # A grade for a student in a section the student is not associated with: 409, unresolved reference.
    stranger = grades[-1]
    bad = dict(record, studentSectionAssociationReference=dict(record["studentSectionAssociationReference"],
                                                               studentUniqueId=stranger.student_id))
    assert stranger.section_id != first.section_id
    return {
        "resource": "grades",
        "body": encode(record),
        "changed_body": encode(changed),
        "bad_body": encode(bad),
        "raw": lambda: served.app.state.emulator.state["resources"]["grades"],
        "natural_key": natural_key,
        "many_bodies": [encode(grade_record(state, grade)) for grade in grades],
        "page_size": PAGE,
    }


class TestEdFiRecordsContract(RecordsDestinationContract):
    pass


@pytest.mark.anyio
async def test_server_errors_on_the_first_posts_are_retried_and_the_record_lands_once(
        served: ServedApp, records_destination: EdFiDestination, record_case: dict[str, Any]) -> None:
    await records_destination.client.authenticate()  # the token POST is not the one under test
    served.control("faults", {"fault_rate": 1.0, "fault_kinds": ["500"], "only_methods": ["POST"]})
    upsert = asyncio.create_task(records_destination.upsert("grades", record_case["body"]))

    def after_two_faults() -> None:
        deadline = time.monotonic() + 10
        while served.control("faults")["injected"].get("500", 0) < 2:
            assert time.monotonic() < deadline, "the client did not retry the POST"
            time.sleep(0.005)
        served.control("faults", {"fault_rate": 0})

    try:
        await asyncio.to_thread(after_two_faults)
        answer = await upsert
    finally:
        served.control("faults", {"fault_rate": 0})
        if not upsert.done():
            upsert.cancel()
    assert served.control("faults")["injected"]["500"] >= 2  # the first attempts did fail
    assert answer.status == 201 and answer.record_id
    raw = served.app.state.emulator.state["resources"]["grades"]
    key = natural_key(json.loads(record_case["body"]))
    assert [record_id for record_id, held in raw.items() if natural_key(held) == key] == [answer.record_id]
    assert len(raw) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("total_count", [True, False])
async def test_a_listing_is_read_to_its_last_page_with_or_without_total_count(total_count: bool) -> None:
    state, _ = generate(EdFiShape(grades=2 * PAGE, students_per_section=25))  # exactly two full pages
    with ServedApp(edfi_emulator.create_app(state, total_count=total_count)) as served:
        destination = EdFiDestination(EdFiClient(served.url, CLIENT_ID, CLIENT_SECRET, concurrency=4))
        try:
            listed = await destination.list_records("studentSectionAssociations")
        finally:
            await destination.aclose()
        pages = served.control("stats")["requests"]["GET /data/v3/ed-fi/studentSectionAssociations"]
    assert len({r["id"] for r in listed}) == 2 * PAGE
    assert pages == 3  # two full pages, then the empty one that says the listing ended


@pytest.mark.anyio
async def test_changes_since_a_version_give_key_changes_changed_records_and_deletes(
        served: ServedApp, records_destination: EdFiDestination) -> None:
    since = await records_destination.newest_change_version()
    emulator = served.app.state.emulator
    rows = emulator.state["resources"]["studentSectionAssociations"]
    moved, gone = list(rows)[:2]
    emulator.rekey("studentSectionAssociations", moved, rows[moved], dict(rows[moved], beginDate="2026-09-01"))
    old = dict(rows[gone])
    emulator.delete("studentSectionAssociations", gone)
    assert since is not None and await records_destination.newest_change_version() == since + 2
    changes = await records_destination.changes_since("studentSectionAssociations", since)
    assert [c["id"] for c in changes.rows] == [moved]
    (key_change,) = changes.key_changes
    assert key_change["id"] == moved and key_change["changeVersion"] == since + 1
    assert (key_change["oldKeyValues"]["beginDate"], key_change["newKeyValues"]["beginDate"]) == (
        "2026-08-10", "2026-09-01")
    (deleted,) = changes.deletes
    assert deleted["id"] == gone and deleted["keyValues"]["studentUniqueId"] == old["studentReference"]["studentUniqueId"]
    assert not await records_destination.changes_since("studentSectionAssociations", since + 2)
