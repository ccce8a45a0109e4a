"""State reporting (Ed-Fi) correctness, over real HTTP against the Ed-Fi emulator: a dry run
writes nothing, the ODS's own changes are noticed by a plain sync (its change queries), a
listing does not lean on Total-Count, two posted grades never share one record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from passback.cli import app
from passback.rules.catalogue import entry
from passback.services import statereport as state_service
from passback.sandbox.edfi_district import MATHEMATICS, PERIOD, STATE_FINAL_GRADE, EdFiShape
from passback.settings import Settings, get_settings
from passback.store import open_store
from passback.store.db import Store
from passback.store.events import pending
from tests.e2e.test_edfi_grades import (
    FINAL,
    GRADING_PERIOD_TYPE,
    World,
    edfi_id,
    items_of,
    replace,
    served_world,
)

SSAS = "studentSectionAssociations"


@pytest.fixture
def world(sqlite_store: Store, tmp_path: Path) -> Iterator[World]:
    with served_world(sqlite_store, Settings(data_dir=tmp_path, concurrency=4)) as built:
        yield built


@pytest.fixture
def cli_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A district whose store is the one the CLI opens (PASSBACK_DATA_DIR)."""
    monkeypatch.setenv("PASSBACK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PASSBACK_CONCURRENCY", "4")
    get_settings.cache_clear()
    settings = get_settings()
    store = open_store(settings)
    try:
        with served_world(store, settings) as built:
            yield built
    finally:
        store.dispose()
        get_settings.cache_clear()


def snapshot(store: Store) -> dict[str, list[str]]:
    """Every row of every table of the store, as text, sorted."""
    with store.engine.connect() as db:
        names = sa.inspect(db).get_table_names()
        return {name: sorted(repr(tuple(row)) for row in db.execute(sa.text(f'SELECT * FROM "{name}"')))
                for name in names}


def association_of(world: World, index: int) -> tuple[str, dict[str, Any]]:
    grade = world.grades[index]
    return next((k, r) for k, r in world.ods.state["resources"][SSAS].items()
                if r["studentReference"]["studentUniqueId"] == grade.student_id
                and r["sectionReference"]["sectionIdentifier"] == grade.section_id)


def ods_request(world: World, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    """A request of another ODS client (the state's, the SIS vendor's), with its own token."""
    token = httpx.post(f"{world.ods.url}/oauth/token", data={"grant_type": "client_credentials"},
                       auth=("sandbox-edfi", "sandbox-edfi-secret")).json()["access_token"]
    return httpx.request(method, f"{world.ods.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"})


def cli_sync(*args: str) -> Any:
    result = CliRunner().invoke(app, ["edfi", "sync", *args])
    assert result.exit_code in (0, 2), result.output
    return result


def data_requests(world: World) -> list[tuple[str, str]]:
    return [(w.method, w.path) for w in world.ods.app.state.writes if w.path.startswith("/data/")]


# --- 1. a dry run writes nothing ----------------------------------------------------------------


def test_a_dry_run_writes_nothing_to_the_store(cli_world: World) -> None:
    world = cli_world
    before = snapshot(world.store)
    first = json.loads(cli_sync("--dry-run", "--json").stdout)  # nothing sent yet: every read is a first read
    assert first["status"] == "dry_run" and first["counts"]["created"] == 30
    assert snapshot(world.store) == before and not world.ods_grades

    world.run()
    replace(world, 0, letter="A" if world.grades[0].letter != "A" else "B")
    replace(world, 1, deleted=True)
    world.grades.append(world.grades[2].model_copy(update={"source_id": "new-1", "grading_task": "Q9"}))
    world.write()
    ssa_id, ssa = association_of(world, 3)  # and the ODS changed an association (read by change queries)
    assert ods_request(world, "PUT", f"/data/v3/ed-fi/{SSAS}/{ssa_id}",
                       dict(ssa, beginDate="2026-08-17")).status_code == 204
    before = snapshot(world.store)
    planned = world.run(dry_run=True)
    assert planned.status == "dry_run" and planned.run_id is None
    assert (planned.counts["deleted"], planned.counts["created"], planned.counts["skipped"]) == (2, 2, 1)
    shown = cli_sync("--dry-run")
    assert "dry_run: created 2, updated 0, unchanged 0, deleted 2, skipped 1" in shown.stdout
    assert snapshot(world.store) == before  # no cache, no queue, no marks, no identity rows, no run


# --- 2. what the ODS changed, noticed by a plain sync -------------------------------------------


def test_an_association_created_after_the_first_send_is_sent_by_the_next_plain_sync(world: World) -> None:
    ssa_id, ssa = association_of(world, 0)
    world.ods.app.state.emulator.delete(SSAS, ssa_id)  # not enrolled in the ODS yet
    first = world.run()
    posted_id = world.grades[0].source_id
    assert items_of(world, first.run_id)[posted_id]["code"] == "edfi-missing-student-section-association"
    assert first.counts["created"] == 29 and pending(world.store, edfi_id(world))

    again = world.run()  # still missing: the grade errors again and stays pending
    assert items_of(world, again.run_id)[posted_id]["outcome"] == "error"
    assert [e.posted_id for e in pending(world.store, edfi_id(world))] == [posted_id]

    ssa.pop("id", None)
    assert ods_request(world, "POST", f"/data/v3/ed-fi/{SSAS}", ssa).status_code == 201  # the SIS vendor sends it
    caught_up = world.run()  # a plain sync, no resync
    assert [i["outcome"] for key, i in items_of(world, caught_up.run_id).items()
            if key.startswith(posted_id)] == ["created"]
    assert world.held(world.grades[0].student_id) and len(world.ods_grades) == 30
    assert pending(world.store, edfi_id(world)) == []
    assert world.run().status == "nothing to do"


def test_without_change_queries_the_associations_are_read_again_by_each_run(
        sqlite_store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, concurrency=4)
    with served_world(sqlite_store, settings, change_queries=False) as world:
        ssa_id, ssa = association_of(world, 0)
        world.ods.app.state.emulator.delete(SSAS, ssa_id)
        assert world.run().counts["error"] == 1
        ssa.pop("id", None)
        assert ods_request(world, "POST", f"/data/v3/ed-fi/{SSAS}", ssa).status_code == 201
        caught_up = world.run()
        assert (caught_up.counts["created"], caught_up.counts["error"]) == (1, 0) and len(world.ods_grades) == 30


def test_an_errored_grade_stays_pending_until_its_source_row_goes_away(world: World) -> None:
    world.ods.app.state.emulator.delete(SSAS, association_of(world, 0)[0])
    world.run()
    world.prefs(state_codes={"F": 0})  # a mapping change: every grade is looked at, the errored one stays pending
    world.run()
    assert [e.posted_id for e in pending(world.store, edfi_id(world))] == [world.grades[0].source_id]
    world.write(world.grades[1:])  # the posted grade is gone from the SIS
    gone = world.run()
    assert gone.status == "succeeded" and pending(world.store, edfi_id(world)) == []


def test_an_association_key_change_is_a_delete_then_a_post_on_a_plain_sync(world: World) -> None:
    world.run()
    student = world.grades[4].student_id
    (old_id,) = [k for k, g in world.ods_grades.items()
                 if g["studentSectionAssociationReference"]["studentUniqueId"] == student]
    ssa_id, ssa = association_of(world, 4)
    assert ods_request(world, "PUT", f"/data/v3/ed-fi/{SSAS}/{ssa_id}",
                       dict(ssa, beginDate="2026-08-24")).status_code == 204  # the enrolment date corrected
    planned = world.run(dry_run=True)  # 5. the plan shows the change as a delete and a post
    assert (planned.counts["deleted"], planned.counts["created"]) == (1, 1)
    assert planned.stats["planned_deletes"] == planned.stats["planned_posts"] == 1
    writes = len(data_requests(world))
    result = world.run()
    assert (result.counts["deleted"], result.counts["created"], result.counts["error"]) == (1, 1, 0)
    assert data_requests(world)[writes:] == [("DELETE", f"/data/v3/ed-fi/grades/{old_id}"),
                                             ("POST", "/data/v3/ed-fi/grades")]
    (record,) = world.held(student)
    assert record["studentSectionAssociationReference"]["beginDate"] == "2026-08-24"
    assert old_id not in world.ods_grades and len(world.ods_grades) == 30
    assert world.run().status == "nothing to do"


def test_a_grading_period_key_change_is_a_delete_then_a_post_on_a_plain_sync(world: World) -> None:
    world.run()
    emulator = world.ods.app.state.emulator
    old_id, period = next((k, r) for k, r in world.ods.state["resources"]["gradingPeriods"].items()
                          if r["gradingPeriodName"] == "First Semester")
    emulator.upsert("gradingPeriods", dict(period, gradingPeriodName="Fall Semester"))  # renamed by the state:
    emulator.delete("gradingPeriods", old_id)  # the new key in, the old one out
    before = set(world.ods_grades)
    result = world.run()
    assert (result.counts["deleted"], result.counts["created"], result.counts["error"]) == (30, 30, 0)
    assert not before & set(world.ods_grades) and len(world.ods_grades) == 30
    assert {g["gradingPeriodReference"]["gradingPeriodName"] for g in world.ods_grades.values()} == {"Fall Semester"}


def test_a_dry_run_shows_a_natural_key_change_as_a_delete_and_a_post(world: World) -> None:
    world.run()
    world.prefs(final_grade_type=STATE_FINAL_GRADE, grade_types={"S1 Final": STATE_FINAL_GRADE})  # in the key
    planned = world.run(dry_run=True)
    assert (planned.counts["deleted"], planned.counts["created"]) == (30, 30)
    assert (planned.stats["planned_deletes"], planned.stats["planned_posts"], planned.stats["planned_writes"]) == (
        30, 30, 60)
    done = world.run()
    assert (done.counts["deleted"], done.counts["created"]) == (30, 30)


# --- 3. a listing without Total-Count ---------------------------------------------------------------


def test_an_ods_that_leaves_out_total_count_is_read_to_its_last_page(sqlite_store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, concurrency=4)
    shape = EdFiShape(grades=1030, students_per_section=25)  # more associations than two pages of 500
    with served_world(sqlite_store, settings, shape, total_count=False) as world:
        listed = ods_request(world, "GET", f"/data/v3/ed-fi/{SSAS}?totalCount=true&limit=1")
        assert "total-count" not in listed.headers
        result = world.run()
        assert result.counts["created"] == 1030 and result.counts["error"] == 0
        resent = world.run(resync=True)  # the resync's listing of the ODS's grades too
        assert resent.counts["deleted"] == 0 and len(world.ods_grades) == 1030


# --- 4. two posted grades, one natural key -----------------------------------------------------------


def twin(world: World, index: int, letter: str) -> Any:
    """A second posted grade that reports to the very same Ed-Fi Grade as grade ``index``."""
    world.prefs(grade_types={"S1 Final B": FINAL}, grading_periods={"S1 Final B": [PERIOD + "First Semester"]})
    return world.grades[index].model_copy(update={"source_id": f"twin-{index}", "grading_task": "S1 Final B",
                                                  "letter": letter})


def test_two_posted_grades_with_one_natural_key_are_never_sent_over_one_another(world: World) -> None:
    first = world.grades[0].model_copy(update={"letter": "A"})
    world.grades[0] = first
    second = twin(world, 0, "D")
    world.write(world.grades + [second])
    result = world.run()
    item = items_of(world, result.run_id)[second.source_id]
    assert (item["outcome"], item["code"]) == ("error", "edfi-duplicate-natural-key")
    assert first.source_id in item["message"] and second.source_id in item["message"]
    assert entry("edfi-duplicate-natural-key").meaning and entry("edfi-duplicate-natural-key").fix
    (record,) = world.held(first.student_id)
    assert record["letterGradeEarned"] == "4"  # the first grade's, not overwritten by the second
    assert [e.posted_id for e in pending(world.store, edfi_id(world))] == [second.source_id]

    world.write(world.grades)  # the second goes away: the first's record stays
    world.run()
    assert [r["letterGradeEarned"] for r in world.held(first.student_id)] == ["4"]

    world.write(world.grades + [second])  # back, and later the first goes away: the second takes over
    assert world.run().counts["error"] == 1
    world.write(world.grades[1:] + [second])
    taken = world.run()
    assert (taken.counts["deleted"], taken.counts["created"], taken.counts["error"]) == (1, 1, 0)
    assert [r["letterGradeEarned"] for r in world.held(first.student_id)] == ["1"]
    assert pending(world.store, edfi_id(world)) == []


def test_a_grade_sent_first_keeps_its_record_against_a_later_twin(world: World) -> None:
    world.run()
    letter = world.held(world.grades[5].student_id)[0].get("letterGradeEarned")
    world.write(world.grades + [twin(world, 5, "A" if letter != "4" else "B")])
    result = world.run()
    assert result.counts["error"] == 1 and result.counts["created"] == result.counts["updated"] == 0
    assert [r.get("letterGradeEarned") for r in world.held(world.grades[5].student_id)] == [letter]


# --- 6. the rest of seed 003 -------------------------------------------------------------------------


def test_the_subject_area_is_reported_only_when_numeric_and_mapped(world: World) -> None:
    state_service.map_subject(world.store, world.settings, "state-edfi", "2", MATHEMATICS)
    for index, code in enumerate(("02", "MA", "05", "2", None)):
        replace(world, index, subject_code=code)
    world.write()
    world.run()
    reported = [world.held(world.grades[i].student_id)[0].get("_ext", {}).get("mn", {}).get(
        "academicSubjectDescriptor") for i in range(5)]
    assert reported == [MATHEMATICS, None, None, MATHEMATICS, None]


def test_only_a_final_state_reported_task_mapped_to_fg_reports(world: World) -> None:
    world.prefs(grade_types={"Q Grade": GRADING_PERIOD_TYPE}, grading_periods={"Q Grade": [PERIOD + "First Quarter"]})
    state_service.map_task(world.store, world.settings, "state-edfi", "S1 Progress", FINAL,
                           [PERIOD + "First Semester"], final=False)
    replace(world, 0, grading_task="Q Grade")
    replace(world, 1, grading_task="S1 Progress")
    world.write()
    result = world.run()
    items = items_of(world, result.run_id)
    quarter, progress = items[world.grades[0].source_id], items[world.grades[1].source_id]
    assert (quarter["outcome"], quarter["code"]) == ("skipped", "edfi-not-final-grade")
    assert "only the final grade" in quarter["message"] and GRADING_PERIOD_TYPE in quarter["message"]
    assert (progress["outcome"], progress["code"]) == ("skipped", "edfi-task-not-final")
    assert "not marked 'final' and 'state reported'" in progress["message"]
    assert not world.held(world.grades[0].student_id) and not world.held(world.grades[1].student_id)
    assert result.counts["created"] == 28


def test_unmapping_a_grading_task_deletes_its_records_on_resync(cli_world: World) -> None:
    world = cli_world
    cli_sync()
    assert len(world.ods_grades) == 30
    removed = CliRunner().invoke(app, ["edfi", "map", "remove", "S1 Final"])
    assert removed.exit_code == 0, removed.output
    result = CliRunner().invoke(app, ["edfi", "resync", "--json"])
    shown = json.loads(result.stdout)
    assert (shown["counts"]["deleted"], shown["counts"]["skipped"]) == (30, 30) and not world.ods_grades
    again = CliRunner().invoke(app, ["edfi", "map", "remove", "S1 Final"])
    assert again.exit_code == 1 and "is not mapped" in again.output


def test_grades_post_to_the_school_year_of_the_courses_calendar(world: World) -> None:
    emulator = world.ods.app.state.emulator
    ssa_id, ssa = association_of(world, 0)  # the student's association in this section is of another year
    emulator.delete(SSAS, ssa_id)
    emulator.upsert(SSAS, {**ssa, "sectionReference": {**ssa["sectionReference"], "schoolYear": 2026}})
    replace(world, 1, school_year=2028)
    world.write()
    result = world.run()
    items = items_of(world, result.run_id)
    assert items[world.grades[0].source_id]["code"] == "edfi-missing-student-section-association"
    assert not world.held(world.grades[0].student_id)  # never sent against the 2026 association
    year = items[world.grades[1].source_id]
    assert (year["outcome"], year["code"]) == ("skipped", "edfi-year-not-configured")
    assert year["message"] == "School year 2028 has no valid Ed-Fi configuration."


def flat(text: str) -> str:
    return " ".join(text.split())


def test_status_shows_the_toggle_every_mapping_pending_events_and_what_a_mapping_change_replaces(
        cli_world: World) -> None:
    world = cli_world
    world.ods.app.state.emulator.delete(SSAS, association_of(world, 0)[0])
    cli_sync()
    CliRunner().invoke(app, ["edfi", "map", "grade", "F", "--code", "0"])
    failing = sum(1 for g in world.grades[1:] if g.letter == "F")  # their records gain letterGradeEarned 0
    before = snapshot(world.store)
    result = CliRunner().invoke(app, ["edfi", "status"])
    assert result.exit_code == 0, result.output
    shown = flat(result.stdout)
    for line in ("Grades resource: on", f"S1 Final: {FINAL}; {PERIOD}First Semester",
                 "State grade codes: A=4, B=3, C=2, D=1, F=0", "School years: 2027",
                 "Subject areas (SCED): none mapped", "Pending events: 1",
                 f"mappings changed since the last send: {failing} records will be replaced"):
        assert line in shown
    assert snapshot(world.store) == before  # the count comes from a dry run
    as_json = json.loads(CliRunner().invoke(app, ["edfi", "status", "--json"]).stdout)
    assert as_json["enabled"] and as_json["records_replaced"] == failing and as_json["pending"]["events"] == 1
    cli_sync()
    assert "mappings unchanged since the last send" in flat(CliRunner().invoke(app, ["edfi", "status"]).stdout)


def test_toggle_says_what_it_did(cli_world: World) -> None:
    said = [flat(CliRunner().invoke(app, ["edfi", "toggle", state]).stdout) for state in ("off", "off", "on")]
    assert said[0].startswith("The Grades resource is now off: what was sent stays in the ODS")
    assert said[1] == "The Grades resource was already off; nothing changed."
    assert said[2].startswith("The Grades resource is now on")
