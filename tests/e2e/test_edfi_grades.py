"""Seed 003 end to end: posted grades to the Ed-Fi emulator, every rule, the ODS's
records checked one by one."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from passback.emulators import edfi as edfi_emulator
from passback.model import PostedGrade, Term
from passback.sandbox.edfi_district import PERIOD, SCHOOL_ID, STATE_FINAL_GRADE, EdFiShape, generate
from passback.settings import Settings
from passback.connectors.csv_export.source import write_export
from passback.services.statereport import change_preferences, report
from passback.store.connections import save_connection
from passback.store.db import Store
from passback.store.events import pending
from passback.store.history import get_run_items
from passback.vault import load_key
from tests.conftest import ServedApp

FINAL = "uri://ed-fi.org/GradeTypeDescriptor#Final"
GRADING_PERIOD_TYPE = "uri://ed-fi.org/GradeTypeDescriptor#Grading Period"
SSA_MESSAGE = ("Student (Student 100001, 100001) does not have a Student Section Association record for the course "
               "(MATH100 Mathematics 100).  This record must exist before Grades can be sent.")


@dataclasses.dataclass
class World:
    store: Store
    settings: Settings
    ods: ServedApp
    export: Path
    grades: list[PostedGrade]

    def write(self, grades: list[PostedGrade] | None = None) -> None:
        write_export(self.export, grades if grades is not None else self.grades)

    def run(self, resync: bool = False, dry_run: bool = False) -> Any:
        return asyncio.run(report(self.store, self.settings, "sis-export", "state-edfi", resync=resync,
                                  dry_run=dry_run))

    def prefs(self, **change: Any) -> None:
        change_preferences(self.store, self.settings, "state-edfi", change)

    @property
    def ods_grades(self) -> dict[str, dict[str, Any]]:
        return self.ods.state["resources"]["grades"]

    def held(self, student: str) -> list[dict[str, Any]]:
        return sorted((g for g in self.ods_grades.values()
                       if g["studentSectionAssociationReference"]["studentUniqueId"] == student),
                      key=lambda g: g["gradingPeriodReference"]["gradingPeriodName"])


@contextmanager
def served_world(store: Store, settings: Settings, shape: EdFiShape | None = None,
                 **emulator_options: Any) -> Iterator[World]:
    """A generated district: its ODS served by the emulator, its posted grades in a csv export."""
    state, grades = generate(shape or EdFiShape(grades=30, students_per_section=10))
    with ServedApp(edfi_emulator.create_app(state, **emulator_options)) as ods:
        key = load_key(settings)
        save_connection(store, key, name="state-edfi", kind="edfi", base_url=ods.url,
                        credentials={"client_id": "sandbox-edfi", "client_secret": "sandbox-edfi-secret"},
                        settings={"grades": {"grade_types": {"S1 Final": FINAL},
                                             "grading_periods": {"S1 Final": [PERIOD + "First Semester"]},
                                             "state_codes": {"A": 4, "B": 3, "C": 2, "D": 1},
                                             "school_years": [2027]}})
        export = settings.data_dir / "grades.csv"
        save_connection(store, key, name="sis-export", kind="csv", base_url=str(export), credentials={})
        built = World(store, settings, ods, export, list(grades))
        built.write()
        yield built


@pytest.fixture
def world(sqlite_store: Store, tmp_path: Path) -> Iterator[World]:
    with served_world(sqlite_store, Settings(data_dir=tmp_path, concurrency=4)) as built:
        yield built


def replace(world: World, index: int, **changes: Any) -> PostedGrade:
    world.grades[index] = world.grades[index].model_copy(update=changes)
    return world.grades[index]


def edfi_id(world: World) -> int:
    from passback.store.connections import get_connection

    return get_connection(world.store, load_key(world.settings), "state-edfi").id


def data_writes(world: World) -> int:
    """The writes the ODS accepted to its data (a token request is not one)."""
    return sum(1 for write in world.ods.app.state.writes if write.path.startswith("/data/"))


def items_of(world: World, run_id: str) -> dict[str, dict[str, Any]]:
    return {i["source_id"]: i for i in get_run_items(world.store, run_id)}


def test_posted_grades_become_one_record_per_grading_period(world: World) -> None:
    first = world.run()
    assert first.counts["created"] == 30 and first.status == "succeeded"
    record = world.held("100000")[0]
    grade = world.grades[0]
    assert record["gradeTypeDescriptor"] == FINAL
    assert record["gradingPeriodReference"] == {"gradingPeriodDescriptor": PERIOD + "First Semester",
                                                "gradingPeriodName": "First Semester", "schoolId": SCHOOL_ID,
                                                "schoolYear": 2027}
    assert record["studentSectionAssociationReference"] == {
        "beginDate": "2026-08-10", "localCourseCode": "MATH100", "schoolId": SCHOOL_ID, "schoolYear": 2027,
        "sectionIdentifier": grade.section_id, "sessionName": "2026-2027 Fall Semester", "studentUniqueId": "100000"}
    for posted in world.grades:  # the state code mapped from the posted letter; F has no mapping here
        held = world.held(posted.student_id)
        expected = {"A": "4", "B": "3", "C": "2", "D": "1"}.get(posted.letter or "")
        assert [r.get("letterGradeEarned") for r in held] == [expected]
    writes = data_writes(world)
    again = world.run()  # the export, the mappings and the queue are as the last run left them
    assert again.counts == {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0, "skipped": 0, "error": 0}
    assert again.status == "nothing to do" and data_writes(world) == writes
    # The ODS's change version moved (by our own grades): its periods and associations were asked
    # what changed, once; from then on the look is the discovery, the token and the version.
    assert again.stats["requests"] == {"edfi": 3 + 2 * 3}
    assert world.run().stats["requests"] == {"edfi": 3}

    # A final task mapped to every quarter reports to each quarter ending inside the term.
    world.prefs(grade_types={"Q Final": FINAL},
                grading_periods={"Q Final": [PERIOD + "First Quarter", PERIOD + "Second Quarter", PERIOD + "Third Quarter"]})
    posted = world.grades[1].model_copy(update={"source_id": "q-1", "grading_task": "Q Final", "letter": "A"})
    world.write(world.grades + [posted])
    world.run()
    quarters = [r["gradingPeriodReference"]["gradingPeriodName"] for r in world.held(posted.student_id)
                if "Quarter" in r["gradingPeriodReference"]["gradingPeriodName"]]
    assert quarters == ["First Quarter", "Second Quarter"]  # the third quarter ends after the term


def test_every_exclusion_and_the_association_check(world: World) -> None:
    replace(world, 0, standard=True)
    replace(world, 1, course_active=False)
    replace(world, 2, school_exclude=True)
    replace(world, 3, calendar_exclude=True)
    replace(world, 4, state_report_exclude=True)
    replace(world, 5, grading_task="Q9 Progress")
    replace(world, 6, school_year=2026)
    replace(world, 7, student_id="100001", student_name="Student 100001",
            section_id=world.grades[20].section_id)  # no such association
    replace(world, 8, term=Term(source_id="X", name="Summer", start=date(2027, 6, 1), end=date(2027, 7, 1)))
    world.write()
    result = world.run()
    items = items_of(world, result.run_id)
    codes = {world.grades[i].source_id: items[world.grades[i].source_id]["code"] for i in range(9)}
    assert list(codes.values()) == [
        "edfi-standard", "edfi-course-inactive", "edfi-excluded", "edfi-excluded", "edfi-excluded",
        "edfi-grading-task-not-mapped", "edfi-year-not-configured", "edfi-missing-student-section-association",
        "edfi-no-overlapping-grading-period"]
    assert items[world.grades[7].source_id]["message"] == SSA_MESSAGE
    assert result.counts["created"] == 21 and len(world.ods_grades) == 21
    for index in range(9):
        assert not world.held(world.grades[index].student_id) or index == 7


def test_changes_deletes_and_college_credit(world: World) -> None:
    world.run()
    replace(world, 0, letter="D" if world.grades[0].letter != "D" else "C")
    replace(world, 1, deleted=True)
    replace(world, 2, grading_task_code="COLLEGECREDIT", credits_earned=3.0)
    world.write()
    result = world.run()
    assert (result.counts["updated"], result.counts["deleted"], result.events) == (2, 1, 3)
    assert world.held(world.grades[1].student_id) == []
    assert world.held(world.grades[0].student_id)[0]["letterGradeEarned"] == {"D": "1", "C": "2"}[world.grades[0].letter]
    credit = world.held(world.grades[2].student_id)[0]["_ext"]["mn"]
    assert credit["collegeCreditEarned"] == 3.0 and credit["localCreditEarned"] == 3.0
    assert "collegeCreditEarned" not in world.held(world.grades[3].student_id)[0].get("_ext", {}).get("mn", {})
    assert pending(world.store, edfi_id(world)) == []  # the queue is drained


def test_toggle_off_keeps_sent_data_and_defers_deletes_to_a_resync(world: World) -> None:
    world.run()
    world.prefs(enabled=False)
    replace(world, 0, letter="F")
    replace(world, 1, deleted=True)
    world.write()
    off = world.run()
    assert off.counts["created"] == off.counts["updated"] == off.counts["deleted"] == 0
    assert len(world.ods_grades) == 30  # sent data stays; the delete waits
    world.prefs(enabled=True)
    caught_up = world.run(resync=True)
    assert caught_up.counts["deleted"] == 1 and caught_up.counts["updated"] == 1
    assert world.held(world.grades[1].student_id) == []
    assert "letterGradeEarned" not in world.held(world.grades[0].student_id)[0]  # F has no state code mapping


def test_resync_repairs_the_identity_map_and_removes_orphans(world: World) -> None:
    world.run()
    lost_id = next(k for k, g in world.ods_grades.items()
                   if g["studentSectionAssociationReference"]["studentUniqueId"] == world.grades[0].student_id)
    world.ods.app.state.emulator.delete("grades", lost_id)  # someone deleted it in the ODS
    stray = dict(world.ods_grades[next(iter(world.ods_grades))], gradeTypeDescriptor=GRADING_PERIOD_TYPE)
    stray_id, _ = world.ods.app.state.emulator.upsert("grades", stray)  # a record nobody sent
    result = world.run(resync=True)
    assert result.counts["created"] == 1 and result.counts["deleted"] == 1
    assert stray_id not in world.ods_grades and len(world.ods_grades) == 30
    assert world.held(world.grades[0].student_id)


def test_a_natural_key_change_is_a_delete_then_a_post(world: World) -> None:
    world.run()
    before = set(world.ods_grades)
    # A mapping change: the state's own 'FG' descriptor in place of Ed-Fi's; the grade type is in the key.
    world.prefs(final_grade_type=STATE_FINAL_GRADE, grade_types={"S1 Final": STATE_FINAL_GRADE})
    result = world.run()
    assert result.counts["created"] == 30 and result.counts["deleted"] == 30 and not before & set(world.ods_grades)
    assert {g["gradeTypeDescriptor"] for g in world.ods_grades.values()} == {STATE_FINAL_GRADE}


def test_the_odss_own_refusal_is_explained(world: World) -> None:
    world.run()
    association = next(k for k, r in world.ods.state["resources"]["studentSectionAssociations"].items()
                       if r["studentReference"]["studentUniqueId"] == world.grades[0].student_id)
    emulator = world.ods.app.state.emulator  # gone without a trace in the change queries (a purged record):
    emulator.index["studentSectionAssociations"].pop(  # only the ODS's refusal can tell passback
        edfi_emulator.KEYS["studentSectionAssociations"](
            emulator.state["resources"]["studentSectionAssociations"].pop(association)))
    for record_id in [k for k, g in world.ods_grades.items()
                      if g["studentSectionAssociationReference"]["studentUniqueId"] == world.grades[0].student_id]:
        world.ods.app.state.emulator.delete("grades", record_id)
    replace(world, 0, letter="A" if world.grades[0].letter != "A" else "B")
    world.write()
    result = world.run()  # the association is still in passback's identity table, not in the ODS
    item = next(i for i in get_run_items(world.store, result.run_id) if i["outcome"] == "error")
    assert item["code"] == "edfi-unresolved-reference"
    assert "The referenced 'StudentSectionAssociation' item does not exist." in item["message"]
    assert pending(world.store, edfi_id(world))  # the event stays queued until the grade is sent


def test_posted_grades_from_powerschool_stored_grades(sqlite_store: Store, tmp_path: Path) -> None:
    """Point 1's other source: PowerSchool's stored (store-code) grades, read through its API."""
    from passback.emulators import powerschool as powerschool_emulator
    from passback.sandbox.edfi_district import powerschool_from_posted

    state, grades = generate(EdFiShape(grades=230, students_per_section=23))
    with ServedApp(edfi_emulator.create_app(state)) as ods, \
            ServedApp(powerschool_emulator.create_app(powerschool_from_posted(grades))) as sis:
        settings = Settings(data_dir=tmp_path, concurrency=4)
        key = load_key(settings)
        save_connection(sqlite_store, key, name="state-edfi", kind="edfi", base_url=ods.url,
                        credentials={"client_id": "sandbox-edfi", "client_secret": "sandbox-edfi-secret"},
                        settings={"grades": {"grade_types": {"S1": FINAL},
                                             "grading_periods": {"S1": [PERIOD + "First Semester"]},
                                             "state_codes": {"A": 4, "B": 3, "C": 2, "D": 1, "F": 0},
                                             "school_years": [2027]}})
        save_connection(sqlite_store, key, name="sis", kind="powerschool", base_url=sis.url,
                        credentials={"client_id": "sandbox-plugin", "client_secret": "sandbox-plugin-secret"})
        result = asyncio.run(report(sqlite_store, settings, "sis", "state-edfi"))
        assert result.counts["created"] == 230 and not result.problems
        held = {(g["studentSectionAssociationReference"]["studentUniqueId"],
                 g["studentSectionAssociationReference"]["sectionIdentifier"]): g
                for g in ods.state["resources"]["grades"].values()}
        for grade in grades:
            record = held[(grade.student_id, grade.section_id)]
            assert record["letterGradeEarned"] == str({"A": 4, "B": 3, "C": 2, "D": 1, "F": 0}[grade.letter])
            assert record["gradingPeriodReference"]["gradingPeriodName"] == "First Semester"
        assert sis.control("stats")["requests"]["GET /ws/schema/table/storedgrades"] == 3  # 100 a page
        again = asyncio.run(report(sqlite_store, settings, "sis", "state-edfi"))
        assert again.counts["created"] == again.counts["updated"] == 0


def test_faults_never_lose_or_double_a_grade(world: World) -> None:
    """Throttling, server errors and cut connections: every grade ends in the ODS exactly once."""
    world.ods.control("faults", {"fault_rate": 0.3, "fault_kinds": ["429", "500", "reset"], "seed": 9})
    first = world.run()
    world.ods.control("faults", {"fault_rate": 0})
    injected = world.ods.control("faults")["injected"]
    assert sum(injected.values()) > 0
    assert first.counts["error"] == 0 and first.counts["created"] + first.counts["updated"] == 30
    keys = [(g["studentSectionAssociationReference"]["studentUniqueId"], g["gradeTypeDescriptor"])
            for g in world.ods_grades.values()]
    assert len(keys) == len(set(keys)) == 30
    assert world.run().counts == {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0, "skipped": 0, "error": 0}
