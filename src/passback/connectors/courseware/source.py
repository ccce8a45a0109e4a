"""Courseware as a source (S4): a course of pages and activities read as one gradebook column.

A courseware course reports one score per student (seed 002), so the snapshot holds one
assignment, the **course score** (:data:`COURSE_SCORE_ID`), whose points possible is
every page's points plus every activity's points possible, and one score per student
computed from what the student did, by :func:`passback.convert.courseware.course_score`
(pages completed earn their current points; a quiz's stored attempt score stands, not
regraded; other activities earn per the current point values). The courseware stores no
course score: reading the course again after an instructor changed point values *is*
the recalculation (R7), and the planner sends only what differs from what was sent.

The column goes into the gradebook under one source category, :data:`CATEGORY_ID`
("Courseware"), which the courseware cannot link to a destination category: it is
mapped per course (``passback categories map --category courseware --to ID``). Its name
in the destination is the course's ``gradebook_title`` (a fix that renames the column
saves a new title in the courseware); its due date is the course's ``due_date``, at the
end of that day in the course's time zone. A student who has not started has no score
(nothing is sent); values the courseware sent that are not numbers are reported on the
run (the column, or that student's score, is left unread), never guessed.

:meth:`CoursewareSource.student_scores` gives the Student Progress & Performance view:
per student, the pages completed and each activity's part of the score.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from passback.connectors.base import Source
from passback.connectors.courseware.client import CoursewareClient
from passback.convert.courseware import Activity, Attempt, Page, Progress, ScoreDetail, points_possible, score_detail
from passback.errors import SourceError
from passback.model import (
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
from passback.model.values import AssignmentChanges

COURSE_SCORE_ID = "course-score"
CATEGORY_ID = "courseware"
CATEGORY_NAME = "Courseware"
AUTOMATIC, MANUAL = "automatic", "manual"


class Unreadable(ValueError):
    """A value the courseware sent that is not what its contract says; the message says which."""


@dataclass(frozen=True)
class StudentScore:
    """One student as the Student Progress & Performance view shows them."""

    student: Student
    section_id: str
    detail: ScoreDetail


@dataclass(frozen=True)
class CourseScores:
    """Every student's course score, with its parts, read at one moment."""

    course_id: str
    title: str
    passback_mode: str
    possible: float
    pages: tuple[Page, ...]
    activities: tuple[Activity, ...]
    students: tuple[StudentScore, ...]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unreadable(f"{what} is {value!r}, not a number")
    return float(value)


def _day(value: Any) -> date | None:
    return date.fromisoformat(str(value)[:10]) if value else None


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def to_pages(rows: list[dict[str, Any]]) -> tuple[Page, ...]:
    """Raises :class:`Unreadable` for a page whose points are not a number."""
    return tuple(Page(str(r["id"]), _number(r.get("points"), f"page {r['id']}'s points"), str(r.get("title") or ""))
                 for r in rows)


def to_activities(rows: list[dict[str, Any]]) -> tuple[Activity, ...]:
    """Raises :class:`Unreadable` for an activity whose points possible are not a number."""
    return tuple(Activity(str(r["id"]), str(r["page_id"]), str(r.get("kind") or ""),
                          _number(r.get("points_possible"), f"activity {r['id']}'s points_possible"),
                          str(r.get("title") or "")) for r in rows)


def to_progress(raw: dict[str, Any]) -> Progress:
    """One student's progress; raises :class:`Unreadable` for an attempt whose numbers are not numbers."""
    attempts = []
    for row in raw.get("attempts") or []:
        score = row.get("score")
        what = f"attempt {row.get('id')} at activity {row.get('activity_id')}"
        attempts.append(Attempt(
            activity_id=str(row["activity_id"]), number=int(row.get("attempt") or 1),
            score=None if score is None else _number(score, f"the score of {what}"),
            points_possible_at_attempt=_number(row.get("points_possible_at_attempt"),
                                               f"the points_possible_at_attempt of {what}"),
            submitted_at=row.get("submitted_at")))
    return Progress(student_id=str(raw["user_id"]),
                    pages_completed=frozenset(str(p["page_id"]) for p in raw.get("pages_completed") or []),
                    attempts=tuple(attempts))


def _last_work(raw: dict[str, Any]) -> datetime | None:
    """When the student last completed a page or submitted an attempt: the score's graded time."""
    moments = [p.get("completed_at") for p in raw.get("pages_completed") or []]
    moments += [a.get("submitted_at") for a in raw.get("attempts") or []]
    known = [m for m in moments if m]
    return _time(max(known)) if known else None


def _due(course: dict[str, Any]) -> datetime | None:
    """The end of the course's due day in its time zone (the destination keeps the date)."""
    day = _day(course.get("due_date"))
    if day is None:
        return None
    try:
        zone = ZoneInfo(course["time_zone"]) if course.get("time_zone") else None
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    return datetime.combine(day, time(23, 59), tzinfo=zone)


def _term(course: dict[str, Any]) -> Term | None:
    raw = course.get("term") or {}
    if not raw:
        return None
    return Term(source_id=f"{course['id']}:term", name=str(raw.get("name") or ""),
                start=_day(raw.get("start_date")), end=_day(raw.get("end_date")))


def _student(enrollment: dict[str, Any]) -> Student:
    user = enrollment.get("user") or {}
    return Student(source_id=str(user["id"]), name=str(user.get("sortable_name") or user.get("name") or ""),
                   sis_id=user.get("sis_id") or None)


class CoursewareSource(Source):
    kind = "courseware"
    has_sync_switch = False

    def __init__(self, client: CoursewareClient) -> None:
        self.client = client

    def course_url(self, course_id: str) -> str:
        """The course's Student Progress & Performance view."""
        return f"{self.client.base_url}/courses/{course_id}/progress"

    async def list_course_ids(self) -> list[str]:
        return [str(c["id"]) for c in await self.client.get_all("/courses")]

    async def passback_mode(self, course_id: str) -> str:
        """The course's ``passback_mode``: ``automatic`` or ``manual`` (scores sent only when a person asks)."""
        course = await self.client.get(f"/courses/{course_id}")
        mode = course.get("passback_mode") or AUTOMATIC
        if mode not in (AUTOMATIC, MANUAL):
            raise SourceError(f"Courseware course {course_id} has passback_mode {mode!r}, which is neither "
                              "automatic nor manual; set it in the course's settings.")
        return str(mode)

    async def _read(self, course_id: str, student_id: str | None = None
                    ) -> tuple[dict[str, Any], list[Any], list[Any], list[Any], list[Any]]:
        """The course, its pages, activities, active student enrollments and their progress, side by side."""
        c = f"/courses/{course_id}"
        progress_read = (self.client.get_all(f"{c}/progress") if student_id is None
                         else self._one_progress(c, student_id))
        course, pages, activities, enrollments, progress = await asyncio.gather(
            self.client.get(c), self.client.get_all(f"{c}/pages"), self.client.get_all(f"{c}/activities"),
            self.client.get_all(f"{c}/enrollments", {"role": "student"}), progress_read)
        active = [e for e in enrollments if e.get("status", "active") == "active"]
        if student_id is not None:
            active = [e for e in active if str((e.get("user") or {}).get("id")) == student_id]
        return course, pages, activities, active, progress

    async def _one_progress(self, course_path: str, student_id: str) -> list[Any]:
        return [await self.client.get(f"{course_path}/students/{student_id}/progress")]

    async def read_course(self, course_id: str) -> CourseSnapshot:
        course, page_rows, activity_rows, enrollments, progress_rows = await self._read(course_id)
        sections = tuple(Section(source_id=str(s["id"]), name=str(s.get("name") or ""), sis_id=s.get("sis_id") or None)
                         for s in course.get("sections") or [])
        students = tuple(_student(e) for e in enrollments)
        progress_of = {str(p["user_id"]): p for p in progress_rows}
        try:
            pages, activities = to_pages(page_rows), to_activities(activity_rows)
        except Unreadable as exc:
            column, scores = self._column(course, None, f"{exc}; the course score cannot be computed"), ()
        else:
            column = self._column(course, points_possible(pages, activities), None)
            scores = tuple(self._score(pages, activities, s.source_id, progress_of.get(s.source_id)) for s in students)
        return CourseSnapshot(
            course=Course(source_id=str(course["id"]), name=str(course.get("title") or course["id"]),
                          code=course.get("code"), sis_id=course.get("sis_course_id"), term=_term(course),
                          time_zone=course.get("time_zone"), html_url=self.course_url(str(course["id"]))),
            sections=sections, students=students,
            enrollments=tuple(Enrollment(student_id=str(e["user"]["id"]), section_id=str(e["section_id"]))
                              for e in enrollments),
            categories=(Category(source_id=CATEGORY_ID, name=CATEGORY_NAME),),
            assignments=(column,), scores=scores,
        )

    def _column(self, course: dict[str, Any], possible: float | None, unreadable: str | None) -> Assignment:
        title = course.get("gradebook_title") or f"{course.get('title') or course['id']} score"
        return Assignment(source_id=COURSE_SCORE_ID, name=str(title),
                          description="Course score: points for completed pages plus activity scores.",
                          due_at=_due(course), points_possible=possible, grading_type=GradingType.POINTS,
                          category_id=CATEGORY_ID, html_url=self.course_url(str(course["id"])), unreadable=unreadable)

    @staticmethod
    def _score(pages: tuple[Page, ...], activities: tuple[Activity, ...], student_id: str,
               raw: dict[str, Any] | None) -> Score:
        base = {"assignment_id": COURSE_SCORE_ID, "student_id": student_id}
        if raw is None:
            return Score(**base)
        try:
            progress = to_progress(raw)
        except (Unreadable, KeyError, TypeError, ValueError) as exc:
            return Score(**base, unreadable=f"{exc}; this student's course score was not computed")
        detail = score_detail(pages, activities, progress)
        if not detail.started:
            return Score(**base)  # not started: no score, which is not a zero
        return Score(**base, score=detail.earned, grade=f"{detail.earned:g}", graded=True, graded_at=_last_work(raw))

    async def student_scores(self, course_id: str, student_id: str | None = None) -> CourseScores:
        """Per student (or for one): pages completed, each activity's part, earned and possible.

        Raises :class:`~passback.errors.SourceNotFound` for a student not in the course and
        :class:`~passback.errors.SourceError` when a point value cannot be read.
        """
        course, page_rows, activity_rows, enrollments, progress_rows = await self._read(course_id, student_id)
        try:
            pages, activities = to_pages(page_rows), to_activities(activity_rows)
            progress_of = {str(p["user_id"]): to_progress(p) for p in progress_rows}
        except Unreadable as exc:
            raise SourceError(f"Courseware course {course_id} sent {exc}; its scores cannot be computed.") from exc
        students = []
        for enrollment in enrollments:
            student = _student(enrollment)
            progress = progress_of.get(student.source_id, Progress(student.source_id))
            students.append(StudentScore(student, str(enrollment["section_id"]),
                                         score_detail(pages, activities, progress)))
        return CourseScores(course_id=str(course["id"]), title=str(course.get("title") or ""),
                            passback_mode=str(course.get("passback_mode") or AUTOMATIC),
                            possible=points_possible(pages, activities), pages=pages, activities=activities,
                            students=tuple(students))

    async def create_category(self, course_id: str, name: str, destination_ref: str) -> str:
        raise SourceError("A courseware course has no gradebook categories to import into: its one column, the "
                          f"course score, is in the category {CATEGORY_ID!r}. Map it instead: passback categories "
                          f"map --course {course_id} --category {CATEGORY_ID} --to {destination_ref}.")

    async def update_assignment(self, course_id: str, assignment_id: str, changes: AssignmentChanges) -> None:
        """A rename saves the course's gradebook title; the score's points and category follow from the course."""
        if assignment_id != COURSE_SCORE_ID:
            raise SourceError(f"Courseware course {course_id} has one gradebook column, {COURSE_SCORE_ID!r}, "
                              f"not {assignment_id!r}.")
        if changes.points_possible is not None or changes.category_id is not None or changes.sync is not None:
            raise SourceError("The course score's points possible are the sum of the course's page and activity "
                              "points, and its category is mapped in passback: change the point values in the "
                              "courseware, or the category mapping, instead.")
        if changes.name is not None:
            await self.client.put(f"/courses/{course_id}/settings", {"gradebook_title": changes.name})

    async def aclose(self) -> None:
        await self.client.aclose()
