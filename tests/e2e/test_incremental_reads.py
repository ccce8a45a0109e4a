"""Incremental reads: a re-sync reads what changed since the route's cursor; a full read catches the rest.

Grades are changed through canvasapi (Instructure's client, not ours) so the emulator's
``graded_at`` moves as Canvas's does; what the cursor cannot see is made by editing the
emulator's state directly, as a flag set without grading would be.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from canvasapi import Canvas

from passback.pipeline.plan import Scope
from passback.services.runs import Route, sync_courses
from passback.settings import Settings
from passback.store.db import Store
from passback.store.history import get_run_items
from passback.store.tables import run_items, source_cursors
from passback.testing.writes import changes, score_rows
from tests.conftest import District
from tests.e2e.expected import expected_destination_scores, held_destination_scores
from tests.e2e.test_sync_district import connect

ROUTE = Route("lms", "sis")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, concurrency=4)


def sync(store: Store, settings: Settings, **kwargs) -> list:  # type: ignore[no-untyped-def]
    return asyncio.run(sync_courses(store, settings, ROUTE, all_courses=True, **kwargs))


def submission_requests(district: District, mark: int) -> list[str]:
    asked = list(district.canvas.app.state.emulator.asked)
    return [r for r in asked[mark:] if "/students/submissions" in r]


def graded_submission(district: District) -> dict:  # type: ignore[type-arg]
    """A graded, on-time submission of an assignment that reaches PowerTeacher Pro."""
    canvas = district.canvas.state
    expected = expected_destination_scores(canvas, district.powerschool.state)
    names = {k[0] for k in expected}
    return next(s for s in canvas["submissions"].values()
                if s["score"] is not None and not s["late"] and not s["excused"] and s["grade_matches_current_submission"]
                and canvas["assignments"][str(s["assignment_id"])]["name"] in names)


def stored_items(store: Store, run_ids: list[str]) -> int:
    with store.engine.connect() as db:
        return db.execute(sa.select(sa.func.count()).select_from(run_items)
                          .where(run_items.c.run_id.in_(run_ids))).scalar_one()


def test_unchanged_resync_reads_only_changes_and_stores_no_rows(store: Store, settings: Settings,
                                                                  district: District) -> None:
    connect(store, settings, district)
    first = sync(store, settings)
    assert {r.stats["read"] for r in first} == {"full"}
    sent = sum(r.counts["created"] for r in first)

    mark = len(district.canvas.app.state.emulator.asked)
    written = len(district.powerschool.writes)
    second = sync(store, settings)
    assert {r.stats["read"] for r in second} == {"changes"}, [r.stats["read_reason"] for r in second]
    # Each course asks Canvas for its submissions twice, narrowed (graded_since, submitted_since), never whole.
    asked = submission_requests(district, mark)
    assert len(asked) == 2 * len(second)
    assert all(("graded_since=" in r) != ("submitted_since=" in r) for r in asked), asked
    assert changes(district.powerschool.writes[written:]) == []
    # Every score sent before is counted unchanged, none is stored as a row.
    assert sum(r.counts["unchanged"] for r in second) == sent  # the scores and their assignments
    assert stored_items(store, [r.run_id for r in second]) == sum(
        r.counts["skipped"] + r.counts["error"] for r in second)
    assert not any(i["outcome"] == "unchanged" for r in second for i in get_run_items(store, r.run_id))


def test_a_changed_grade_is_read_and_written_once(store: Store, settings: Settings, district: District) -> None:
    connect(store, settings, district)
    sync(store, settings)
    submission = graded_submission(district)
    new_score = 1.0 if submission["score"] != 1.0 else 2.0
    canvas = Canvas(district.canvas.url, district.credentials.canvas_token)
    assignment_row = district.canvas.state["assignments"][str(submission["assignment_id"])]
    course = canvas.get_course(assignment_row["course_id"])
    course.get_assignment(assignment_row["id"]).get_submission(submission["user_id"]).edit(
        submission={"posted_grade": str(new_score)})

    written = len(district.powerschool.writes)
    results = sync(store, settings)
    assert {r.stats["read"] for r in results} == {"changes"}
    assert sum(r.counts["updated"] for r in results) == 1 and sum(r.counts["created"] for r in results) == 0
    rows = score_rows(changes(district.powerschool.writes[written:]))
    assert [row["scorepoints"] for _, _, row in rows] == [new_score]
    assert held_destination_scores(district.powerschool.state) == expected_destination_scores(
        district.canvas.state, district.powerschool.state)


def test_what_the_cursor_cannot_see_a_full_read_catches(store: Store, settings: Settings, district: District) -> None:
    connect(store, settings, district)
    submission = graded_submission(district)
    submission["graded_at"] = "2026-09-01T15:00:00Z"  # graded long before the others: outside the cursor's lag
    sync(store, settings)
    # A change that moves no graded_at or submitted_at (as a flag set without grading does).
    submission["score"] = submission["entered_score"] = 0.0
    submission["grade"] = submission["entered_grade"] = "0"
    expected = expected_destination_scores(district.canvas.state, district.powerschool.state)

    unseen = sync(store, settings)
    assert sum(r.counts["updated"] for r in unseen) == 0  # the cursor cannot see it
    assert held_destination_scores(district.powerschool.state) != expected

    on_demand = asyncio.run(sync_courses(store, settings, ROUTE, [Scope(course_id=str(
        district.canvas.state["assignments"][str(submission["assignment_id"])]["course_id"]))], full_read=True))
    assert [r.stats["read"] for r in on_demand] == ["full"]
    assert sum(r.counts["updated"] for r in on_demand) == 1
    assert held_destination_scores(district.powerschool.state) == expected


def test_reconciliation_is_due_after_the_period(store: Store, settings: Settings, district: District) -> None:
    connect(store, settings, district)
    sync(store, settings)
    assert {r.stats["read"] for r in sync(store, settings)} == {"changes"}
    with store.transaction() as db:  # the last full read was eight days ago
        db.execute(source_cursors.update().values(full_at=datetime.now(UTC) - timedelta(days=8)))
    reconciled = sync(store, settings)
    assert {r.stats["read"] for r in reconciled} == {"full"}
    assert all("reconciliation" in r.stats["read_reason"] for r in reconciled)
    assert {r.stats["read"] for r in sync(store, settings)} == {"changes"}  # and the week starts again


def test_a_roster_change_reads_the_course_whole(store: Store, settings: Settings, district: District) -> None:
    connect(store, settings, district)
    sync(store, settings)
    canvas = district.canvas.state
    course_id = next(iter(canvas["courses"]))
    enrollment = next(e for e in canvas["enrollments"].values()
                      if str(e["course_id"]) == course_id and e["type"] == "StudentEnrollment")
    enrollment["enrollment_state"] = "deleted"  # a student leaves the course
    results = {r.run_id: r for r in sync(store, settings)}
    reasons = [r.stats["read_reason"] for r in results.values() if r.stats["read"] == "full"]
    assert reasons == ["sections, rosters or setup changed since the last read"]
