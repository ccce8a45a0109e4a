"""Gradebook cases end to end: letter grades, a section the destination does not have, a
course without a valid time zone.

Each course is set up in the Canvas emulator as a teacher would (through Canvas's API
where Canvas has one), synced through :func:`passback.services.runs.sync_courses`, and
checked on the PowerSchool emulator's raw state and write log. Expected values come from
seed 000's tables ("Transfer of Assignment Grades": Points | Points; error 6's words) and
from what Canvas documents, worked out here by hand, never by passback's code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from passback.store.db import Store
from passback.testing.writes import assignment_creates, assignment_sections, score_rows
from tests.conftest import District
from tests.e2e.expected import expected_destination_scores
from tests.e2e.test_faults import Trial, _trial

LETTERS = [  # the course's grading standard: a letter and the bottom of its band
    {"name": "A", "value": 0.9}, {"name": "B", "value": 0.8}, {"name": "C", "value": 0.7},
    {"name": "D", "value": 0.6}, {"name": "F", "value": 0.0},
]
# Canvas scores a letter as GradingStandard#grade_to_score does: the top letter is 100%, any
# other one point under the bottom of the band above it; a number posted stays as it is.
# Seed 000: the points pass as points. On a 20-point assignment:
POSTED_TO_POINTS = {"A": 20.0, "B": 17.8, "C": 15.8, "D": 13.8, "F": 11.8, "13": 13.0}
DUE_UTC = "2026-09-16T04:59:00Z"  # 11:59 pm on 15 September in Chicago; 16 September in UTC


@pytest.fixture
def trial(sqlite_store: Store, tmp_path: Path, district: District) -> Trial:
    return _trial(sqlite_store, tmp_path, district)


def group_id(trial: Trial, name: str) -> int:
    return next(g["id"] for g in trial.canvas["assignment_groups"].values()
                if str(g["course_id"]) == trial.course_id and g["name"] == name)


def students(trial: Trial) -> list[dict[str, Any]]:
    """The course's students: Canvas user, Canvas section, PowerSchool student dcid."""
    dcids = {str(s["local_id"]): s["id"] for s in trial.powerschool.state["students"].values()}
    rows = []
    for enrollment in sorted(trial.canvas["enrollments"].values(), key=lambda e: e["id"]):
        if str(enrollment["course_id"]) != trial.course_id or enrollment["type"] != "StudentEnrollment":
            continue
        user = trial.canvas["users"][str(enrollment["user_id"])]
        section = trial.canvas["sections"][str(enrollment["course_section_id"])]["sis_section_id"]
        rows.append({"user_id": user["id"], "section": section, "dcid": dcids.get(user["sis_user_id"])})
    return rows


def add_assignment(trial: Trial, name: str, **fields: Any) -> dict[str, Any]:
    values = {"name": name, "points_possible": "20", "grading_type": "points", "due_at": DUE_UTC,
              "assignment_group_id": str(group_id(trial, "Tests")), "post_to_sis": "true", "published": "true"}
    values |= {k: str(v) for k, v in fields.items()}
    return trial.canvas_api("POST", f"/courses/{trial.course_id}/assignments",
                            data={f"assignment[{k}]": v for k, v in values.items()}).json()


def post_grade(trial: Trial, assignment_id: int, user_id: int, grade: str) -> dict[str, Any]:
    return trial.canvas_api("PUT", f"/courses/{trial.course_id}/assignments/{assignment_id}/submissions/{user_id}",
                            data={"submission[posted_grade]": grade}).json()


def test_letter_grades_pass_as_the_points_canvas_gives_them(trial: Trial) -> None:
    trial.canvas["grading_standards"]["9001"] = {
        "id": 9001, "title": "District letters", "context_type": "Course", "context_id": int(trial.course_id),
        "grading_scheme": LETTERS}
    trial.canvas["courses"][trial.course_id]["grading_standard_id"] = 9001
    essay = add_assignment(trial, "Essay 1", grading_type="letter_grade")
    graded = {}
    for student, posted in zip(students(trial), list(POSTED_TO_POINTS) * 3, strict=False):
        submission = post_grade(trial, essay["id"], student["user_id"], posted)
        assert submission["score"] == POSTED_TO_POINTS[posted]  # the emulator scores as Canvas does
        graded[(student["section"], student["dcid"])] = POSTED_TO_POINTS[posted]

    result = trial.sync()
    assert result.counts["error"] == 0
    held = {(section, student): score for (name, section, student), score in trial.held().items() if name == "Essay 1"}
    assert {k: v["scorepoints"] for k, v in held.items()} == graded
    assert not any(v["islate"] or v["isexempt"] for v in held.values())
    assert trial.held() == trial.expected()  # and every other assignment as before
    [dest] = [a for a in trial.powerschool.state["assignments"].values()
              if a["_assignmentsections"][0]["name"] == "Essay 1"]
    assert {s["scoreentrypoints"] for s in dest["_assignmentsections"]} == {20.0}
    assert {s["scoretype"] for s in dest["_assignmentsections"]} == {"POINTS"}
    trial.assert_synced_once()


def test_a_section_without_a_match_in_the_destination(trial: Trial) -> None:
    """Students of a Canvas section PowerSchool does not have are reported by seed 000's error 6,
    each of them; everyone else's grades go; an assignment given only to that section is not made."""
    canvas = trial.canvas
    course = int(trial.course_id)
    section_id = canvas["next_id"] = canvas["next_id"] + 1
    canvas["sections"][str(section_id)] = {
        "id": section_id, "name": "Period 9", "course_id": course, "nonxlist_course_id": None, "start_at": None,
        "end_at": None, "restrict_enrollments_to_section_dates": False, "sis_section_id": "999999",
        "sis_course_id": canvas["courses"][trial.course_id]["sis_course_id"], "integration_id": None}
    strangers = sorted({e["user_id"] for e in canvas["enrollments"].values() if e["course_id"] != course})[:2]
    for user_id in strangers:  # students PowerSchool knows, in a section it does not
        enrollment_id = canvas["next_id"] = canvas["next_id"] + 1
        canvas["enrollments"][str(enrollment_id)] = {
            "id": enrollment_id, "course_id": course, "course_section_id": section_id, "user_id": user_id,
            "type": "StudentEnrollment", "role": "StudentEnrollment", "enrollment_state": "active",
            "sis_section_id": "999999"}
    names = trial.valid_names()
    for name in names:
        for user_id in strangers:
            post_grade(trial, trial.canvas_assignment(name)["id"], user_id, "9")
    only_there = add_assignment(trial, "Period 9 Lab", only_visible_to_overrides="true")
    canvas["assignments"][str(only_there["id"])]["overrides"] = [
        {"id": canvas["next_id"] + 1, "assignment_id": only_there["id"], "title": "Period 9",
         "course_section_id": section_id}]
    canvas["next_id"] += 1

    result = trial.sync()
    matched = {k: v for k, v in expected_destination_scores(canvas, trial.powerschool.state).items()
               if k[1] in trial.sections() and k[1] != "999999"}
    assert trial.held() == matched  # everyone in a matched section, as seed 000's tables say
    errors = trial.items(result, "error")
    stranger_errors = [i for i in errors if i["object_kind"] == "score"]
    assert len(stranger_errors) == len(names) * len(strangers)
    assert {i["source_id"].rsplit(":", 1)[1] for i in stranger_errors} == {str(u) for u in strangers}
    for item in stranger_errors:
        assert item["code"] == "student-not-in-destination-section"
        assert "does not have an AssignmentStudentAssociation in AssignmentSection.Id" in item["message"]  # error 6
    [section_error] = [i for i in errors if i["object_kind"] == "assignment"]
    assert section_error["code"] == "section-not-in-destination"
    assert section_error["source_id"].endswith(f":{only_there['id']}")
    assert "Period 9 Lab" not in trial.held_names()
    # Nothing was sent for the section: every assignment spans the two matched sections only,
    # and no score row names a stranger.
    assert all(sections == tuple(sorted(trial.sections() - {"999999"}))
               for (_, sections) in assignment_creates(trial.powerschool.writes))
    stranger_dcids = {str(s["dcid"]) for s in students(trial) if s["section"] == "999999"}
    assert stranger_dcids and not {student for _, student, _ in score_rows(trial.powerschool.writes)} & stranger_dcids


def _due_dates(trial: Trial) -> dict[str, str]:
    return {name: trial.powerschool.state["assignments"][aid]["_assignmentsections"][0]["duedate"]
            for aid, name, section in assignment_sections(trial.powerschool.state).values()
            if section in trial.sections()}


@pytest.mark.parametrize(("time_zone", "due_date"), [
    ("America/Chicago", "2026-09-15"),  # the date the teacher set, in the course's zone
    (None, "2026-09-16"),  # no zone: the date of Canvas's instant, which Canvas gives in UTC
    ("", "2026-09-16"),
    ("Central Time (US & Canada)", "2026-09-16"),  # a Rails zone name, not an IANA one
    ("/etc/localtime", "2026-09-16"),  # a path, which ZoneInfo refuses with ValueError
])
def test_a_course_without_a_valid_time_zone_still_syncs(trial: Trial, time_zone: str | None, due_date: str) -> None:
    trial.canvas["courses"][trial.course_id]["time_zone"] = time_zone
    add_assignment(trial, "Lab Practical")
    result = trial.sync()
    assert result.status in ("succeeded", "completed_with_errors"), result.failure
    assert result.counts["error"] == 0
    assert _due_dates(trial)["Lab Practical"] == due_date
    # Every other assignment syncs as well, its dates read in the same zone.
    assert trial.held() == trial.expected()
    if time_zone != "America/Chicago":
        for name, held in _due_dates(trial).items():
            assert held == trial.canvas_assignment(name)["due_at"][:10], name
    trial.assert_synced_once()
