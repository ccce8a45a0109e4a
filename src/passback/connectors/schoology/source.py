"""Schoology as a source (S2): one course section read into the canonical model.

A Schoology section is its own gradebook (assignments, categories and grades belong to
the section), so a passback "course" here is one section, linked to its destination
section by ``section_school_code``. Students are enrollments (``admin`` 0, ``status``
"1"), known to the destination by ``school_uid``. Grading categories are not linked to
the destination by Schoology: they are mapped per course (seed 001, step C). Schoology
keeps no "sync to SIS" flag, so the switch is kept by passback.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from passback.connectors.base import Source
from passback.errors import SourceError
from passback.model.values import AssignmentChanges
from passback.connectors.schoology.client import SchoologyClient
from passback.model import (
    AssignedTo,
    Assignment,
    Category,
    Course,
    CourseSnapshot,
    Enrollment,
    GradingType,
    Score,
    Section,
    Student,
    Term,
)

EXCUSED, INCOMPLETE, MISSING = 1, 2, 3
ACTIVE = "1"


def _due(value: str | None, zone: ZoneInfo | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    return moment.replace(tzinfo=zone) if zone else moment


def _day(value: str | None) -> date | None:
    return datetime.strptime(value[:10], "%Y-%m-%d").date() if value else None


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


def to_score(raw: dict[str, Any], student_of: dict[str, str]) -> Score | None:
    student = student_of.get(str(raw["enrollment_id"]))
    if student is None:
        return None
    exception = int(raw.get("exception") or 0)
    grade = _number(raw.get("grade"))
    common = {"assignment_id": str(raw["assignment_id"]), "student_id": student}
    if exception == EXCUSED:
        return Score(**common, excused=True, graded=True)
    if exception == INCOMPLETE:  # seed 000: "Incomplete: 0, Incomplete status not passed"
        return Score(**common, score=0.0, grade="incomplete", graded=True)
    if exception >= MISSING:
        return Score(**common, missing=True)
    return Score(**common, score=grade, grade=None if grade is None else f"{grade:g}", graded=grade is not None)


class SchoologySource(Source):
    kind = "schoology"
    has_sync_switch = False

    def __init__(self, client: SchoologyClient) -> None:
        self.client = client
        self._me: dict[str, Any] | None = None

    async def _user(self) -> dict[str, Any]:
        if self._me is None:
            self._me = await self.client.get("/users/me")
        return self._me

    async def list_course_ids(self) -> list[str]:
        me = await self._user()
        sections = await self.client.get_all(f"/users/{me['uid']}/sections", "section")
        return [str(s["id"]) for s in sections if int(s.get("admin", 0)) == 1 and int(s.get("active", 1)) == 1]

    def course_url(self, course_id: str) -> str:
        return f"{self.client.base_url}/section/{course_id}"

    async def read_course(self, course_id: str) -> CourseSnapshot:
        s = f"/sections/{course_id}"
        me, section, enrollments, categories, periods, assignments, grades = await asyncio.gather(
            self._user(),
            self.client.get(s),
            self.client.get_all(f"{s}/enrollments", "enrollment"),
            self.client.get(f"{s}/grading_categories"),
            self.client.get(f"{s}/grading_periods"),
            self.client.get_all(f"{s}/assignments", "assignment"),
            self.client.get_all(f"{s}/grades", "grade"),
        )
        zone = ZoneInfo(me["tz_name"]) if me.get("tz_name") else None
        students = [e for e in enrollments if int(e.get("admin", 0)) == 0 and str(e.get("status")) == ACTIVE]
        student_of = {str(e["id"]): str(e["uid"]) for e in students}
        period_rows = periods.get("grading_period") or []
        starts = [d for p in period_rows if (d := _day(p.get("start")))]
        ends = [d for p in period_rows if (d := _day(p.get("end")))]
        term = Term(source_id=",".join(str(p["id"]) for p in period_rows),
                    name=" / ".join(p["title"] for p in period_rows),
                    start=min(starts) if starts else None, end=max(ends) if ends else None) if period_rows else None
        sis_id = section.get("section_school_code") or None
        scores = [score for raw in grades if (score := to_score(raw, student_of)) is not None]
        scores += self._ungraded(assignments, scores, student_of)
        return CourseSnapshot(
            course=Course(source_id=str(section["id"]), name=f"{section['course_title']}: {section['section_title']}",
                          code=section.get("course_code"), sis_id=sis_id, term=term,
                          time_zone=me.get("tz_name"), html_url=self.course_url(course_id)),
            sections=(Section(source_id=str(section["id"]), name=section["section_title"], sis_id=sis_id),),
            students=tuple(Student(source_id=str(e["uid"]), name=f"{e.get('name_last', '')}, {e.get('name_first', '')}",
                                   sis_id=e.get("school_uid") or None) for e in students),
            enrollments=tuple(Enrollment(student_id=str(e["uid"]), section_id=str(section["id"])) for e in students),
            categories=tuple(Category(source_id=str(c["id"]), name=c["title"])
                             for c in categories.get("grading_category") or []),
            assignments=tuple(self._assignment(a, zone, student_of, course_id) for a in assignments
                              if a.get("type", "assignment") == "assignment"),
            scores=tuple(scores),
        )

    @staticmethod
    def _ungraded(assignments: list[dict[str, Any]], scores: list[Score], student_of: dict[str, str]) -> list[Score]:
        """An ungraded score for each assigned student Schoology holds no grade for (seed 000, error 3)."""
        have = {(s.assignment_id, s.student_id) for s in scores}
        missing = []
        for raw in assignments:
            assigned = [str(e) for e in raw.get("assignees") or []] or list(student_of)
            for enrollment in assigned:
                student = student_of.get(enrollment)
                if student and (str(raw["id"]), student) not in have:
                    missing.append(Score(assignment_id=str(raw["id"]), student_id=student))
        return missing

    def _assignment(self, raw: dict[str, Any], zone: ZoneInfo | None, student_of: dict[str, str],
                    course_id: str) -> Assignment:
        assignees = raw.get("assignees") or []
        category = str(raw.get("grading_category") or "0")
        return Assignment(
            source_id=str(raw["id"]), name=raw["title"], description=raw.get("description") or None,
            due_at=_due(raw.get("due"), zone), points_possible=_number(raw.get("max_points")),
            grading_type=GradingType.POINTS, category_id=None if category == "0" else category,
            assigned_to=AssignedTo.INDIVIDUALS if assignees else AssignedTo.EVERYONE,
            published=int(raw.get("published", 1)) == 1, html_url=raw.get("web_url"),
        )

    async def create_category(self, course_id: str, name: str, destination_ref: str) -> str:
        response = await self.client.send("POST", f"/sections/{course_id}/grading_categories",
                                          {"grading_categories": {"grading_category": [{"title": name}]}})
        rows = response.json()["grading_categories"]["grading_category"]
        if not rows or int(rows[0].get("response_code", 201)) >= 400:
            raise SourceError(f"Schoology did not create the category {name!r}: {rows}")
        return str(rows[0]["id"])

    async def update_assignment(self, course_id: str, assignment_id: str, changes: AssignmentChanges) -> None:
        body: dict[str, Any] = {}
        if changes.name is not None:
            body["title"] = changes.name
        if changes.points_possible is not None:
            body["max_points"] = changes.points_possible
        if changes.category_id is not None:
            body["grading_category"] = changes.category_id
        if body:
            await self.client.send("PUT", f"/sections/{course_id}/assignments/{assignment_id}", body)

    async def aclose(self) -> None:
        await self.client.aclose()
