"""Schoology as a source (S2): one course section read into the canonical model.

A Schoology section is its own gradebook (assignments, categories and grades belong to
the section), so a passback "course" here is one section, linked to its destination
section by ``section_school_code``. Students are enrollments (``admin`` 0, ``status``
"1"), known to the destination by ``school_uid``. Grading categories are not linked to
the destination by Schoology: they are mapped per course (seed 001, step C). Schoology
keeps no "sync to SIS" flag, so the switch is kept by passback.

Gradebook columns are read from ``/sections/{id}/grade_items``, which Schoology documents
as "any content that can be graded": assignments, assessments (tests and quizzes) and
graded discussions, each an assignment object whose ``type`` says which, and whose ``id``
is the ``assignment_id`` its grades carry. All three are read as assignments. Nothing is
guessed or dropped in silence: a column of an undocumented type, a grade for a column
the section does not list, and a grade whose ``exception`` is not one Schoology
documents (1 excused, 2 incomplete) are left out of the snapshot and kept, with their
reason, in :attr:`SchoologySource.unread` (and logged by id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from passback.connectors.base import Source
from passback.connectors.http import UncertainWrite
from passback.connectors.schoology.client import SchoologyClient
from passback.errors import SourceError
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
from passback.model.values import AssignmentChanges

log = structlog.get_logger("passback.schoology")

EXCUSED, INCOMPLETE = 1, 2  # the only exceptions the Grade object documents
GRADE_ITEM_TYPES = frozenset({"assignment", "assessment", "discussion"})  # the assignment object's ``type``
ACTIVE = "1"


@dataclass(frozen=True)
class Unread:
    """One Schoology record left out of a snapshot, and why: the trace a silent drop would not leave."""

    kind: str  # "grade item" or "grade"
    source_id: str  # the item id, or "item id:enrollment id" for a grade
    reason: str


class UnknownException(ValueError):
    """A grade's ``exception`` is not one Schoology documents: it is reported, never interpreted."""

    def __init__(self, code: Any) -> None:
        super().__init__(f"grade exception {code!r} is not one Schoology documents (1 excused, 2 incomplete)")
        self.code = code


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


def _exception_code(raw: dict[str, Any]) -> int:
    """The grade's exception as a number (absent or empty is none); anything else is unknown."""
    value = raw.get("exception")
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UnknownException(value) from None


def to_score(raw: dict[str, Any], student_of: dict[str, str]) -> Score | None:
    """One grade row as a score; None for an enrollment that is not an active student.

    Raises :class:`UnknownException` for an exception code Schoology does not document.
    """
    student = student_of.get(str(raw["enrollment_id"]))
    if student is None:
        return None
    exception = _exception_code(raw)
    grade = _number(raw.get("grade"))
    common = {"assignment_id": str(raw["assignment_id"]), "student_id": student}
    if exception == EXCUSED:
        return Score(**common, excused=True, graded=True)
    if exception == INCOMPLETE:  # seed 000: "Incomplete: 0, Incomplete status not passed"
        return Score(**common, score=0.0, grade="incomplete", graded=True)
    if exception != 0:
        raise UnknownException(exception)
    return Score(**common, score=grade, grade=None if grade is None else f"{grade:g}", graded=grade is not None)


def _grade_key(raw: dict[str, Any]) -> str:
    return f"{raw.get('assignment_id')}:{raw.get('enrollment_id')}"


def _item_ids(items: list[dict[str, Any]]) -> dict[str, str]:
    """Every id a grade may name an item by: its ``id``, and its ``grade_item_id`` where that differs.

    Schoology's pages disagree on which of the two a discussion's grades carry; both lead
    to the same column, and an id that is some item's own ``id`` is never taken as an alias.
    """
    ids = {str(raw["id"]): str(raw["id"]) for raw in items}
    for raw in items:
        alias = str(raw.get("grade_item_id") or "")
        if alias and alias not in ids:
            ids[alias] = str(raw["id"])
    return ids


def _split_items(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Unread]]:
    """The gradebook columns passback reads, and a record for each of a type Schoology does not document."""
    kept, unread = [], []
    for raw in items:
        kind = str(raw.get("type") or "assignment")
        if kind in GRADE_ITEM_TYPES:
            kept.append(raw)
        else:
            unread.append(Unread("grade item", str(raw["id"]), f"grade item type {kind!r} is not one Schoology "
                                 "documents (assignment, assessment, discussion); it was not read"))
    return kept, unread


def read_grades(grades: list[dict[str, Any]], student_of: dict[str, str], item_of: dict[str, str],
                skipped_items: set[str]) -> tuple[list[Score], list[Unread]]:
    """The scores of the readable grades, and a record of every grade that could not be read honestly."""
    scores: list[Score] = []
    unread: list[Unread] = []
    for raw in grades:
        named = str(raw.get("assignment_id"))
        if str(raw.get("enrollment_id")) not in student_of or named in skipped_items:
            continue  # not an active student of the section, or a column already recorded as unread
        item = item_of.get(named)
        if item is None:
            unread.append(Unread("grade", _grade_key(raw), f"grade for item {named}, which the section's grade "
                                 "items do not list; it was not read"))
            continue
        try:
            score = to_score({**raw, "assignment_id": item}, student_of)
        except UnknownException as exc:
            unread.append(Unread("grade", f"{item}:{raw.get('enrollment_id')}", f"{exc}; the score was not read"))
            continue
        if score is not None:
            scores.append(score)
    return scores, unread


class SchoologySource(Source):
    kind = "schoology"
    has_sync_switch = False

    def __init__(self, client: SchoologyClient) -> None:
        self.client = client
        self._me: dict[str, Any] | None = None
        self.unread: dict[str, tuple[Unread, ...]] = {}
        """Per course, what the last read left out of its snapshot and why (also logged)."""
        self._item_kinds: dict[tuple[str, str], tuple[str, str]] = {}  # read cache: (course, item) -> (type, node)

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
        me, section, enrollments, categories, periods, listed, grades = await asyncio.gather(
            self._user(),
            self.client.get(s),
            self.client.get_all(f"{s}/enrollments", "enrollment"),
            self.client.get(f"{s}/grading_categories"),
            self.client.get(f"{s}/grading_periods"),
            self.client.get_all(f"{s}/grade_items", "assignment"),
            self.client.get_all(f"{s}/grades", "grade"),
        )
        zone = ZoneInfo(me["tz_name"]) if me.get("tz_name") else None
        students = [e for e in enrollments if int(e.get("admin", 0)) == 0 and str(e.get("status")) == ACTIVE]
        student_of = {str(e["id"]): str(e["uid"]) for e in students}
        items, scores = self._gradebook(course_id, listed, grades, student_of)
        unreadable = _unreadable_items(listed, self.unread[course_id])
        sis_id = section.get("section_school_code") or None
        return CourseSnapshot(
            course=Course(source_id=str(section["id"]), name=f"{section['course_title']}: {section['section_title']}",
                          code=section.get("course_code"), sis_id=sis_id, term=_term(periods),
                          time_zone=me.get("tz_name"), html_url=self.course_url(course_id)),
            sections=(Section(source_id=str(section["id"]), name=section["section_title"], sis_id=sis_id),),
            students=tuple(Student(source_id=str(e["uid"]), name=f"{e.get('name_last', '')}, {e.get('name_first', '')}",
                                   sis_id=e.get("school_uid") or None) for e in students),
            enrollments=tuple(Enrollment(student_id=str(e["uid"]), section_id=str(section["id"])) for e in students),
            categories=tuple(Category(source_id=str(c["id"]), name=c["title"])
                             for c in categories.get("grading_category") or []),
            assignments=tuple(self._assignment(a, zone) for a in items) + unreadable,
            scores=tuple(scores),
        )

    def _gradebook(self, course_id: str, listed: list[dict[str, Any]], grades: list[dict[str, Any]],
                   student_of: dict[str, str]) -> tuple[list[dict[str, Any]], list[Score]]:
        """The section's readable columns and scores; whatever cannot be read honestly is recorded, not dropped."""
        items, unread = _split_items(listed)
        skipped = {str(raw["id"]) for raw in listed} - {str(raw["id"]) for raw in items}
        scores, unread_grades = read_grades(grades, student_of, _item_ids(items), skipped)
        self._record(course_id, items, unread + unread_grades)
        held = {(s.assignment_id, s.student_id) for s in scores} | _unread_pairs(unread_grades, student_of)
        return items, scores + self._ungraded(items, held, student_of) + _unreadable_scores(unread_grades, student_of)

    def _record(self, course_id: str, items: list[dict[str, Any]], unread: list[Unread]) -> None:
        """Keep what this read left out (and log it by id), and each column's type for later writes."""
        self.unread[course_id] = tuple(unread)
        for record in unread:
            _note("warning", "schoology_record_not_read", course=course_id, kind=record.kind, record=record.source_id,
                  reason=record.reason)
        for raw in items:
            kind = str(raw.get("type") or "assignment")
            self._item_kinds[(course_id, str(raw["id"]))] = (kind, str(raw.get("grade_item_id") or raw["id"]))

    @staticmethod
    def _ungraded(items: list[dict[str, Any]], held: set[tuple[str, str]], student_of: dict[str, str]) -> list[Score]:
        """An ungraded score for each assigned student Schoology holds no grade for (seed 000, error 3)."""
        missing = []
        for raw in items:
            assigned = [str(e) for e in raw.get("assignees") or []] or list(student_of)
            for enrollment in assigned:
                student = student_of.get(enrollment)
                if student and (str(raw["id"]), student) not in held:
                    missing.append(Score(assignment_id=str(raw["id"]), student_id=student))
        return missing

    def _assignment(self, raw: dict[str, Any], zone: ZoneInfo | None) -> Assignment:
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
        """POST one grading category; Schoology answers 200 with ``{"grading_category": [row]}``.

        A create whose answer is lost or unreadable is looked up among the categories of
        that name that were not there before it was sent: adopted when it was made, reported
        when it was not, and never sent a second time. Schoology's categories have no field
        to hold ``destination_ref``: the link is the mapping the caller saves.
        """
        path = f"/sections/{course_id}/grading_categories"
        before = await self._category_ids_named(course_id, name)
        try:
            response = await self.client.send("POST", path, {"grading_categories": {"grading_category": [{"title": name}]}})
        except UncertainWrite:
            return await self._find_created(course_id, name, before)
        created = _created_category_id(response.content, name)
        return created if created is not None else await self._find_created(course_id, name, before)

    async def _category_ids_named(self, course_id: str, name: str) -> list[str]:
        listed = await self.client.get(f"/sections/{course_id}/grading_categories")
        return [str(c["id"]) for c in listed.get("grading_category") or [] if c.get("title") == name]

    async def _find_created(self, course_id: str, name: str, before: list[str]) -> str:
        """The category an unconfirmed create made, found by name among the new ones; an error if none."""
        new = sorted((c for c in await self._category_ids_named(course_id, name) if c not in before),
                     key=lambda c: (len(c), c))
        if new:
            _note("info", "schoology_category_found_after_lost_answer", course=course_id, category=new[0])
            return new[0]
        raise SourceError(f"Schoology did not confirm creating the category {name!r} in section {course_id}, and "
                          "no such new category is there: nothing was created. Run the import again.")

    async def update_assignment(self, course_id: str, assignment_id: str, changes: AssignmentChanges) -> None:
        body: dict[str, Any] = {}
        if changes.name is not None:
            body["title"] = changes.name
        if changes.points_possible is not None:
            body["max_points"] = changes.points_possible
        if changes.category_id is not None:
            body["grading_category"] = changes.category_id
        if body:
            await self.client.send("PUT", self._item_path(course_id, assignment_id), body)

    def _item_path(self, course_id: str, assignment_id: str) -> str:
        """Where a column is edited: a graded discussion under its discussion thread, the rest as assignments."""
        kind, node = self._item_kinds.get((course_id, assignment_id), ("assignment", assignment_id))
        if kind == "discussion":
            return f"/sections/{course_id}/discussions/{node}"
        return f"/sections/{course_id}/assignments/{assignment_id}"

    async def aclose(self) -> None:
        await self.client.aclose()


def _note(level: str, event: str, **fields: Any) -> None:
    """Log an event by id. A log line is best effort, as in stdlib logging: a closed stream
    (the CLI binds structlog to the stderr of its moment) must never fail a read or a write."""
    with contextlib.suppress(OSError, ValueError):
        getattr(log, level)(event, **fields)


def _created_category_id(content: bytes, name: str) -> str | None:
    """The new category's id from the documented answer; None when the answer cannot be read.

    Raises SourceError when Schoology's row refuses the create (``response_code`` 400 or more).
    """
    try:
        row = json.loads(content)["grading_category"][0]
        code = int(row.get("response_code", 200))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    if code >= 400:
        raise SourceError(f"Schoology refused to create the category {name!r}: {row}")
    return str(row["id"]) if row.get("id") not in (None, "") else None


def _term(periods: dict[str, Any]) -> Term | None:
    """The section's grading periods as one term: first start to last end."""
    rows = periods.get("grading_period") or []
    if not rows:
        return None
    starts = [d for p in rows if (d := _day(p.get("start")))]
    ends = [d for p in rows if (d := _day(p.get("end")))]
    return Term(source_id=",".join(str(p["id"]) for p in rows), name=" / ".join(p["title"] for p in rows),
                start=min(starts) if starts else None, end=max(ends) if ends else None)


def _unreadable_items(listed: list[dict[str, Any]], unread: tuple[Unread, ...]) -> tuple[Assignment, ...]:
    """Each column of an undocumented type, in the snapshot with its reason, so the run reports it."""
    titles = {str(raw["id"]): str(raw.get("title") or raw["id"]) for raw in listed}
    return tuple(Assignment(source_id=r.source_id, name=titles.get(r.source_id, r.source_id), unreadable=r.reason)
                 for r in unread if r.kind == "grade item")


def _unreadable_scores(unread: list[Unread], student_of: dict[str, str]) -> list[Score]:
    """Each grade left unread, in the snapshot with its reason: reported on the run, neither sent nor cleared."""
    scores = []
    for record in unread:
        item, _, enrollment = record.source_id.partition(":")
        if record.kind == "grade" and enrollment in student_of:
            scores.append(Score(assignment_id=item, student_id=student_of[enrollment], unreadable=record.reason))
    return scores


def _unread_pairs(unread: list[Unread], student_of: dict[str, str]) -> set[tuple[str, str]]:
    """(item, student) of each grade left unread: it is held by Schoology, so it is not 'ungraded'."""
    pairs = set()
    for record in unread:
        item, _, enrollment = record.source_id.partition(":")
        if record.kind == "grade" and enrollment in student_of:
            pairs.add((item, student_of[enrollment]))
    return pairs
