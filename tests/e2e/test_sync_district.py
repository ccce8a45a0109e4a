"""A generated district synced through the whole pipeline, on SQLite and on PostgreSQL,
checked record by record on the PowerTeacher Pro side."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from passback.pipeline.plan import Scope
from passback.services.runs import Route, sync_courses
from passback.settings import Settings
from passback.store.db import Store
from passback.store.connections import save_connection
from passback.store.history import count_audit, get_run_items
from passback.testing.writes import (
    assignment_changes,
    assignment_creates,
    assignment_sections,
    changes,
    confirmed,
    score_rows,
    score_writes,
)
from passback.vault import load_key
from tests.conftest import District
from tests.e2e.expected import destination_assignment_names, expected_destination_scores, held_destination_scores

ROUTE = Route("lms", "sis")


def connect(store: Store, settings: Settings, district: District) -> None:
    key = load_key(settings)
    save_connection(store, key, name="lms", kind="canvas", base_url=district.canvas.url,
                    credentials={"token": district.credentials.canvas_token})
    save_connection(store, key, name="sis", kind="powerschool", base_url=district.powerschool.url,
                    credentials={"client_id": district.credentials.powerschool_client_id,
                                 "client_secret": district.credentials.powerschool_client_secret})


def sync_all(store: Store, settings: Settings, **kwargs) -> list:  # type: ignore[no-untyped-def]
    return asyncio.run(sync_courses(store, settings, ROUTE, all_courses=True, **kwargs))


def total(results: list, outcome: str) -> int:  # type: ignore[type-arg]
    return sum(r.counts[outcome] for r in results)


def held_score_keys(district: District) -> set[tuple[str, str]]:
    """(assignment section, student) of every score PowerTeacher Pro holds, from its raw state."""
    return {(str(s["assignmentsectionid"]), str(s["studentsdcid"])) for s in district.powerschool.state["scores"].values()}


def assert_each_written_once(district: District, writes: list) -> None:  # type: ignore[type-arg]
    """Every assignment the emulator holds was created by one accepted POST, every score it
    holds by one accepted score row, and nothing else was written."""
    creates = assignment_creates(writes)
    held = {(a["_assignmentsections"][0]["name"], tuple(sorted(str(s["sectionsdcid"]) for s in a["_assignmentsections"])))
            for a in district.powerschool.state["assignments"].values()}
    assert set(creates) == held
    assert all(count == 1 for count in creates.values()), {k: n for k, n in creates.items() if n > 1}
    handled = district.powerschool.control("stats")["requests"].get("POST /ws/xte/section/assignment/", 0)
    assert handled == len(creates)  # no create sent again, only to be refused as a duplicate
    scores = score_writes(writes)
    assert set(scores) == held_score_keys(district)
    assert all(count == 1 for count in scores.values()), {k: n for k, n in scores.items() if n > 1}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, concurrency=4)


def test_district_sync_matches_canvas_exactly_and_is_incremental(store: Store, settings: Settings,
                                                                 district: District) -> None:
    connect(store, settings, district)
    first = sync_all(store, settings)
    assert all(r.status in ("succeeded", "completed_with_errors") for r in first)
    expected = expected_destination_scores(district.canvas.state, district.powerschool.state)
    assert expected and held_destination_scores(district.powerschool.state) == expected
    assert total(first, "created") > len(expected)  # scores plus their assignments
    assert sum(count_audit(store, r.run_id) for r in first) == len(expected)
    writes = district.powerschool.writes
    assert_each_written_once(district, writes)  # what the emulator took in, not what it kept
    assert not assignment_changes(writes, "PUT") and not assignment_changes(writes, "DELETE")
    written = len(writes)

    # The broken assignments of the first course: each error explained, the rest synced.
    items = [i for r in first for i in get_run_items(store, r.run_id, ("error", "skipped"))]
    by_code = {i["code"]: i for i in items if i["object_kind"] == "assignment"}
    assert set(by_code) >= {"name-over-destination-limit", "points-possible-none", "not-in-imported-group", "sync-off"}
    assert by_code["points-possible-none"]["message"] == "Score entry points is required"
    assert "Value may not contain more than 50 character(s)." in by_code["name-over-destination-limit"]["message"]

    second = sync_all(store, settings)
    assert total(second, "created") == total(second, "updated") == total(second, "deleted") == 0
    assert total(second, "unchanged") == total(first, "created")
    assert held_destination_scores(district.powerschool.state) == expected
    assert changes(district.powerschool.writes[written:]) == []  # the second run wrote nothing at all


def test_one_changed_score_is_one_write(store: Store, settings: Settings, district: District) -> None:
    connect(store, settings, district)
    sync_all(store, settings)
    canvas = district.canvas.state
    submission = next(s for s in canvas["submissions"].values()
                      if s["score"] is not None and not s["late"] and s["grade_matches_current_submission"]
                      and expected_key_exists(district, s))
    assignment = canvas["assignments"][str(submission["assignment_id"])]
    new_score = 1.0 if submission["score"] != 1.0 else 2.0
    response = httpx.put(
        f"{district.canvas.url}/api/v1/courses/{assignment['course_id']}/assignments/{assignment['id']}/submissions/{submission['user_id']}",
        data={"submission[posted_grade]": str(new_score)},
        headers={"Authorization": f"Bearer {district.credentials.canvas_token}"},
    )
    assert response.status_code == 200
    mark = len(district.powerschool.writes)
    results = sync_all(store, settings)
    assert total(results, "updated") == 1 and total(results, "created") == 0
    new_writes = changes(district.powerschool.writes[mark:])
    assert [w.method + " " + w.path for w in new_writes] == ["PUT /ws/xte/score"]  # one write, of one score
    [(asid, student, row)] = score_rows(new_writes)
    assert row["scorepoints"] == new_score
    user = district.canvas.state["users"][str(submission["user_id"])]
    dcid = next(s["id"] for s in district.powerschool.state["students"].values()
                if str(s["local_id"]) == user["sis_user_id"])
    assert student == str(dcid) and assignment_sections(district.powerschool.state)[asid][1] == assignment["name"]
    assert held_destination_scores(district.powerschool.state) == expected_destination_scores(
        district.canvas.state, district.powerschool.state)


def expected_key_exists(district: District, submission: dict) -> bool:  # type: ignore[type-arg]
    expected = expected_destination_scores(district.canvas.state, district.powerschool.state)
    name = district.canvas.state["assignments"][str(submission["assignment_id"])]["name"]
    return any(k[0] == name for k in expected)


def test_removed_grade_and_deleted_assignment_are_deleted(sqlite_store: Store, settings: Settings,
                                                          district: District) -> None:
    connect(sqlite_store, settings, district)
    sync_all(sqlite_store, settings)
    canvas = district.canvas.state
    submission = next(s for s in canvas["submissions"].values() if s["score"] is not None and not s["excused"]
                      and expected_key_exists(district, s))
    assignment = canvas["assignments"][str(submission["assignment_id"])]
    headers = {"Authorization": f"Bearer {district.credentials.canvas_token}"}
    base = f"{district.canvas.url}/api/v1/courses/{assignment['course_id']}/assignments"
    httpx.put(f"{base}/{assignment['id']}/submissions/{submission['user_id']}",
              data={"submission[posted_grade]": ""}, headers=headers).raise_for_status()
    other = next(a for a in canvas["assignments"].values()
                 if a["course_id"] == assignment["course_id"] and a["id"] != assignment["id"] and a["post_to_sis"]
                 and any(k[0] == a["name"] for k in expected_destination_scores(canvas, district.powerschool.state)))
    httpx.delete(f"{base}/{other['id']}", headers=headers).raise_for_status()
    sections = assignment_sections(district.powerschool.state)
    course_sections = {s["sis_section_id"] for s in canvas["sections"].values() if s["course_id"] == assignment["course_id"]}
    other_id = next(aid for aid, name, section in sections.values() if name == other["name"] and section in course_sections)
    mark = len(district.powerschool.writes)
    results = sync_all(sqlite_store, settings)
    assert total(results, "deleted") == 2  # the removed grade, and the deleted assignment (its scores with it)
    new_writes = changes(district.powerschool.writes[mark:])
    assert assignment_changes(new_writes, "DELETE") == {other_id: 1}
    [(asid, _student, row)] = score_rows(new_writes)  # the removed grade: one blank row
    assert sections[asid][1] == assignment["name"] and sections[asid][2] in course_sections
    assert row["scorepoints"] is None and not row["isexempt"]
    assert len(new_writes) == 2
    assert held_destination_scores(district.powerschool.state) == expected_destination_scores(
        district.canvas.state, district.powerschool.state)
    remaining = {(n, sec) for n, sec in destination_assignment_names(district.powerschool.state) if sec in course_sections}
    assert remaining and other["name"] not in {n for n, _ in remaining}


def test_faults_never_lose_or_double_a_grade(sqlite_store: Store, tmp_path: Path, district: District) -> None:
    # One request in flight at a time: the server assigns ids in the same order every
    # trial, so the requests are the same and the seeded faults replay exactly.
    settings = Settings(data_dir=tmp_path, concurrency=1, course_concurrency=1, http_timeout=1.0)
    connect(sqlite_store, settings, district)
    district.powerschool.control("faults", {"fault_rate": 0.15, "fault_kinds": ["429", "500", "timeout", "reset"],
                                            "timeout_seconds": 1.5, "seed": 27})
    district.canvas.control("faults", {"fault_rate": 0.1, "fault_kinds": ["500", "reset"], "seed": 6})
    sync_all(sqlite_store, settings)
    faults = district.powerschool.faults
    lost = faults.lost_writes()
    trial = f"PowerSchool faults (seed {faults.seed}): {[f.as_dict() for f in faults.log]}"
    assert {f.kind for f in faults.log} == {"429", "500", "timeout", "reset"}, trial
    assert any(f.method == "POST" for f in lost), trial  # an assignment create whose answer was lost
    assert any(f.method == "PUT" and f.path == "/ws/xte/score" for f in lost), trial  # and a score write
    district.powerschool.control("faults", {"fault_rate": 0})
    district.canvas.control("faults", {"fault_rate": 0})
    sync_all(sqlite_store, settings)  # whatever the first run could not confirm
    expected = expected_destination_scores(district.canvas.state, district.powerschool.state)
    assert held_destination_scores(district.powerschool.state) == expected, trial
    names = destination_assignment_names(district.powerschool.state)
    assert len(names) == len(set(names))  # no assignment created twice
    writes = district.powerschool.writes
    creates = assignment_creates(writes)  # a create whose answer was lost took effect: found, never repeated
    assert creates and all(count == 1 for count in creates.values()), (creates, trial)
    handled = district.powerschool.control("stats")["requests"].get("POST /ws/xte/section/assignment/", 0)
    assert handled == len(creates), trial  # none sent again to be refused as a duplicate
    # Each score reached the destination by exactly one write the client saw answered; any
    # other write of it is one whose answer the emulator withheld (repeating an upsert).
    told = score_writes(confirmed(writes, lost))
    assert set(told) == held_score_keys(district) and set(told.values()) == {1}, trial
    assert not assignment_changes(writes, "PUT") and not assignment_changes(writes, "DELETE")
    written = len(writes)
    final = sync_all(sqlite_store, settings)
    assert total(final, "created") == total(final, "updated") == 0
    assert changes(district.powerschool.writes[written:]) == []


def test_dry_run_writes_nothing_and_shows_the_plan(sqlite_store: Store, settings: Settings, district: District) -> None:
    connect(sqlite_store, settings, district)
    course = next(iter(district.canvas.state["courses"]))
    results = asyncio.run(sync_courses(sqlite_store, settings, ROUTE, [Scope(course_id=course)], dry_run=True))
    assert district.powerschool.state["assignments"] == {}
    plan = results[0].plan
    assert plan is not None and plan.writes() > 0
    real = asyncio.run(sync_courses(sqlite_store, settings, ROUTE, [Scope(course_id=course)]))
    assert real[0].counts == results[0].counts  # the dry run showed exactly what the run did


def test_one_assignment_and_one_student_scopes(sqlite_store: Store, settings: Settings, district: District) -> None:
    connect(sqlite_store, settings, district)
    canvas = district.canvas.state
    course = next(iter(canvas["courses"]))
    expected = expected_destination_scores(canvas, district.powerschool.state)
    assignment = next(a for a in canvas["assignments"].values()
                      if str(a["course_id"]) == course and any(k[0] == a["name"] for k in expected))
    asyncio.run(sync_courses(sqlite_store, settings, ROUTE, [Scope(course_id=course, assignment_id=str(assignment["id"]))]))
    assert {n for n, _ in destination_assignment_names(district.powerschool.state)} == {assignment["name"]}
    student = next(e["user_id"] for e in canvas["enrollments"].values() if str(e["course_id"]) == course)
    result = asyncio.run(sync_courses(sqlite_store, settings, ROUTE, [Scope(course_id=course, student_id=str(student))]))
    score_items = [i for i in get_run_items(sqlite_store, result[0].run_id) if i["object_kind"] == "score"]
    assert score_items and {i["source_id"].rsplit(":", 1)[1] for i in score_items} == {str(student)}
