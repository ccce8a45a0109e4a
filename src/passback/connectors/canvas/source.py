"""Canvas as a source (S1): one course read into the canonical model.

Six listings per course, fetched side by side: the course with its term, sections,
student enrollments, assignment groups, assignments with overrides, and one bulk
submissions listing for all students (never a request per student).
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any

from passback.connectors.base import Source
from passback.model.values import AssignmentChanges
from passback.connectors.canvas.client import CanvasClient
from passback.model import (
    AssignedTo,
    Assignment,
    Category,
    Course,
    CourseSnapshot,
    Enrollment,
    GradingSchemeEntry,
    GradingType,
    Score,
    Section,
    Student,
    Term,
)

GRADING_TYPES = {
    "points": GradingType.POINTS,
    "percent": GradingType.PERCENT,
    "letter_grade": GradingType.LETTER,
    "gpa_scale": GradingType.GPA_SCALE,
    "pass_fail": GradingType.PASS_FAIL,
    "not_graded": GradingType.NOT_GRADED,
}
MASTERY_PATHS_NOOP_ID = 1
DEFAULT_SCHEME = (
    ("A", 0.94), ("A-", 0.90), ("B+", 0.87), ("B", 0.84), ("B-", 0.80), ("C+", 0.77),
    ("C", 0.74), ("C-", 0.70), ("D+", 0.67), ("D", 0.64), ("D-", 0.61), ("F", 0.0),
)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def parse_day(value: str | None) -> date | None:
    moment = parse_time(value)
    return moment.date() if moment else None


def to_assignment(raw: dict[str, Any]) -> Assignment:
    overrides = raw.get("overrides") or []
    mastery = any(o.get("noop_id") == MASTERY_PATHS_NOOP_ID for o in overrides)
    section_ids = tuple(str(o["course_section_id"]) for o in overrides if o.get("course_section_id"))
    if not raw.get("only_visible_to_overrides"):
        assigned = AssignedTo.EVERYONE
    elif any(o.get("student_ids") for o in overrides):
        assigned = AssignedTo.INDIVIDUALS
    else:
        assigned = AssignedTo.SECTIONS
    points = raw.get("points_possible")
    return Assignment(
        source_id=str(raw["id"]),
        name=raw["name"],
        description=raw.get("description"),
        due_at=parse_time(raw.get("due_at")),
        points_possible=None if points is None else float(points),
        grading_type=GRADING_TYPES.get(raw.get("grading_type") or "points", GradingType.POINTS),
        category_id=str(raw["assignment_group_id"]) if raw.get("assignment_group_id") else None,
        assigned_to=assigned,
        section_ids=section_ids if assigned is AssignedTo.SECTIONS else (),
        mastery_paths=mastery,
        sync=bool(raw.get("post_to_sis")),
        published=bool(raw.get("published", True)),
        html_url=raw.get("html_url"),
    )


def to_score(raw: dict[str, Any]) -> Score:
    score = raw.get("score")
    grade = raw.get("grade")
    return Score(
        assignment_id=str(raw["assignment_id"]),
        student_id=str(raw["user_id"]),
        score=None if score is None else float(score),
        grade=grade,
        graded=score is not None or grade is not None,
        late=bool(raw.get("late")),
        missing=bool(raw.get("missing")),
        excused=bool(raw.get("excused")),
        resubmitted=raw.get("grade_matches_current_submission") is False,
        graded_at=parse_time(raw.get("graded_at")),
    )


def to_category(raw: dict[str, Any]) -> Category:
    sis_source_id = raw.get("sis_source_id")
    return Category(
        source_id=str(raw["id"]),
        name=raw["name"],
        imported=sis_source_id is not None,
        destination_ref=str(sis_source_id) if sis_source_id is not None else None,
    )


class CanvasSource(Source):
    kind = "canvas"
    has_sync_switch = True  # "Sync to SIS" is the assignment's post_to_sis

    def __init__(self, client: CanvasClient) -> None:
        self.client = client

    def course_url(self, course_id: str) -> str:
        return f"{self.client.base_url}/courses/{course_id}"

    async def list_course_ids(self) -> list[str]:
        courses = await self.client.get_all("/courses")
        return [str(c["id"]) for c in courses]

    async def read_course(self, course_id: str) -> CourseSnapshot:
        c = f"/courses/{course_id}"
        course, sections, enrollments, groups, assignments, submissions = await asyncio.gather(
            self.client.get(c, [("include[]", "term")]),
            self.client.get_all(f"{c}/sections"),
            self.client.get_all(
                f"{c}/enrollments", [("type[]", "StudentEnrollment"), ("state[]", "active")]
            ),
            self.client.get_all(f"{c}/assignment_groups"),
            self.client.get_all(f"{c}/assignments", [("include[]", "overrides")]),
            self.client.get_all(f"{c}/students/submissions", [("student_ids[]", "all")]),
        )
        scheme: tuple[GradingSchemeEntry, ...] = ()
        if any(a.get("grading_type") == "letter_grade" for a in assignments):
            scheme = await self._grading_scheme(c, course)
        term_raw = course.get("term") or {}
        term = None
        if term_raw:
            term = Term(
                source_id=str(term_raw["id"]),
                name=term_raw.get("name") or "",
                start=parse_day(term_raw.get("start_at") or course.get("start_at")),
                end=parse_day(term_raw.get("end_at") or course.get("end_at")),
            )
        students: dict[str, Student] = {}
        for enrollment in enrollments:
            user = enrollment.get("user") or {}
            students[str(enrollment["user_id"])] = Student(
                source_id=str(enrollment["user_id"]),
                name=user.get("sortable_name") or user.get("name") or "",
                sis_id=enrollment.get("sis_user_id") or user.get("sis_user_id"),
            )
        return CourseSnapshot(
            course=Course(
                source_id=str(course["id"]),
                name=course["name"],
                code=course.get("course_code"),
                sis_id=course.get("sis_course_id"),
                term=term,
                time_zone=course.get("time_zone"),
                html_url=self.course_url(str(course["id"])),
            ),
            sections=tuple(
                Section(source_id=str(s["id"]), name=s["name"], sis_id=s.get("sis_section_id"))
                for s in sections
            ),
            students=tuple(students.values()),
            enrollments=tuple(
                Enrollment(student_id=str(e["user_id"]), section_id=str(e["course_section_id"]))
                for e in enrollments
            ),
            categories=tuple(to_category(g) for g in groups),
            assignments=tuple(to_assignment(a) for a in assignments),
            scores=tuple(to_score(s) for s in submissions),
            grading_scheme=scheme,
        )

    async def _grading_scheme(self, course_path: str, course: dict[str, Any]) -> tuple[GradingSchemeEntry, ...]:
        standards = await self.client.get_all(f"{course_path}/grading_standards")
        wanted = course.get("grading_standard_id")
        chosen = next((s for s in standards if s["id"] == wanted), None) or (standards[0] if standards else None)
        pairs = [(e["name"], e["value"]) for e in chosen["grading_scheme"]] if chosen else list(DEFAULT_SCHEME)
        return tuple(GradingSchemeEntry(name=n, min_fraction=float(v)) for n, v in pairs)

    async def create_category(self, course_id: str, name: str, destination_ref: str) -> str:
        group = await self.client.send(
            "POST", f"/courses/{course_id}/assignment_groups",
            json={"name": name, "sis_source_id": destination_ref,
                  "integration_data": {"passback": {"destination_category_id": destination_ref}}},
        )
        return str(group["id"])

    async def update_assignment(self, course_id: str, assignment_id: str, changes: AssignmentChanges) -> None:
        fields: dict[str, Any] = {}
        if changes.name is not None:
            fields["name"] = changes.name
        if changes.points_possible is not None:
            fields["points_possible"] = changes.points_possible
        if changes.category_id is not None:
            fields["assignment_group_id"] = int(changes.category_id)
        if changes.sync is not None:
            fields["post_to_sis"] = changes.sync
        if fields:
            await self.client.send("PUT", f"/courses/{course_id}/assignments/{assignment_id}",
                                   json={"assignment": fields})

    async def aclose(self) -> None:
        await self.client.aclose()
