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
    before = district.powerschool.control("stats")["requests"].get("PUT /ws/xte/score", 0)
    results = sync_all(store, settings)
    assert total(results, "updated") == 1 and total(results, "created") == 0
    assert district.powerschool.control("stats")["requests"]["PUT /ws/xte/score"] == before + 1
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
    results = sync_all(sqlite_store, settings)
    assert total(results, "deleted") >= 2
    assert held_destination_scores(district.powerschool.state) == expected_destination_scores(
        district.canvas.state, district.powerschool.state)
    course_sections = {s["sis_section_id"] for s in canvas["sections"].values() if s["course_id"] == assignment["course_id"]}
    remaining = {(n, sec) for n, sec in destination_assignment_names(district.powerschool.state) if sec in course_sections}
    assert remaining and other["name"] not in {n for n, _ in remaining}


def test_faults_never_lose_or_double_a_grade(sqlite_store: Store, tmp_path: Path, district: District) -> None:
    settings = Settings(data_dir=tmp_path, concurrency=4, http_timeout=1.0)
    connect(sqlite_store, settings, district)
    district.powerschool.control("faults", {"fault_rate": 0.25, "fault_kinds": ["429", "500", "timeout", "reset"],
                                            "timeout_seconds": 1.5, "seed": 5})
    district.canvas.control("faults", {"fault_rate": 0.2, "fault_kinds": ["500", "reset"], "seed": 6})
    sync_all(sqlite_store, settings)
    injected = district.powerschool.control("faults")["injected"]
    assert injected.get("timeout", 0) + injected.get("reset", 0) > 0  # writes whose answers were lost
    district.powerschool.control("faults", {"fault_rate": 0})
    district.canvas.control("faults", {"fault_rate": 0})
    sync_all(sqlite_store, settings)  # whatever the first run could not confirm
    expected = expected_destination_scores(district.canvas.state, district.powerschool.state)
    assert held_destination_scores(district.powerschool.state) == expected
    names = destination_assignment_names(district.powerschool.state)
    assert len(names) == len(set(names))  # no assignment created twice
    final = sync_all(sqlite_store, settings)
    assert total(final, "created") == total(final, "updated") == 0


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
