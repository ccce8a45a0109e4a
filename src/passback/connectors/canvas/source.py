"""Canvas as a source (S1): one course read into the canonical model.

Six listings per course, fetched side by side: the course with its term, sections,
student enrollments, assignment groups, assignments with overrides, and one bulk
submissions listing for all students (never a request per student).
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, date, datetime
from typing import Any

from passback.connectors.base import Source
from passback.connectors.incremental import Incremental
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
    SourceProblem,
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
    """An ISO 8601 instant (UTC when it names no zone); None when absent; ValueError (TypeError) when it is no instant."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"{shown(value)} is not a date and time")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# What reading one row of a listing may raise: the row is then a problem of the run, never the course's failure.
ROW_ERRORS = (ValueError, TypeError, KeyError, AttributeError, ArithmeticError)


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}...{text[-1]}"


def to_id(value: Any, what: str) -> str:
    """A Canvas id (a number, or its text)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"{what} {shown(value)} is not an id")
    if not 0 < len(str(value).strip()) <= 64:
        raise ValueError(f"{what} {shown(value)} is not an id")
    return str(value)


def to_number(value: Any, what: str) -> float | None:
    """A JSON number, or None; text, true/false, NaN or a number past a float's range is unreadable."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} {shown(value)} is not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{what} {shown(value)} is not a finite number")
    return number


def to_time(value: Any, what: str) -> datetime | None:
    try:
        return parse_time(value)
    except (ValueError, TypeError):
        raise ValueError(f"{what} {shown(value)} is not a date and time") from None


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
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"its name {shown(name)} is not text")
    return Assignment(
        source_id=to_id(raw.get("id"), "its id"),
        name=name or "",  # a blank name is the rules' to report
        description=raw.get("description"),
        due_at=to_time(raw.get("due_at"), "its due date"),
        points_possible=to_number(raw.get("points_possible"), "its points possible"),
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
    """A submission; one whose score or grade cannot be read is kept as unreadable (neither sent nor cleared).

    Raises ValueError or TypeError when the row names no assignment or no student: it cannot be keyed.
    """
    keys = {"assignment_id": to_id(raw.get("assignment_id"), "its assignment id"),
            "student_id": to_id(raw.get("user_id"), "its user id")}
    grade = raw.get("grade")
    grade = None if grade is None else str(grade)
    try:
        score = to_number(raw.get("score"), "its score")
    except (ValueError, TypeError) as exc:
        return Score(**keys, unreadable=str(exc))
    try:
        graded_at = parse_time(raw.get("graded_at"))
    except (ValueError, TypeError):
        graded_at = None  # when it was graded is sent nowhere: no reason to withhold the grade
    return Score(
        **keys,
        score=score,
        grade=grade,
        graded=score is not None or grade is not None,
        late=bool(raw.get("late")),
        missing=bool(raw.get("missing")),
        excused=bool(raw.get("excused")),
        resubmitted=raw.get("grade_matches_current_submission") is False,
        graded_at=graded_at,
    )


def to_category(raw: dict[str, Any]) -> Category:
    sis_source_id = raw.get("sis_source_id")
    name = raw.get("name")
    return Category(
        source_id=to_id(raw.get("id"), "its id"),
        name="" if name is None else str(name),  # the import link, not the name, is what maps it
        imported=sis_source_id is not None,
        destination_ref=str(sis_source_id) if sis_source_id is not None else None,
    )


def read_roster(course_id: str, rows: list[dict[str, Any]], section_ids: set[str]
                ) -> tuple[list[Student], list[Enrollment], list[SourceProblem]]:
    """The course's students and their sections. A student in none of the course's sections (an enrollment
    without one, or in one the course does not list) is a problem of the run: no grade of theirs can be placed."""
    students: dict[str, Student] = {}
    enrollments: list[Enrollment] = []
    placed: set[str] = set()
    first: dict[str, tuple[int, Any]] = {}
    for line, enrollment in enumerate(rows, 1):
        user = enrollment.get("user") or {}
        name = user.get("sortable_name") or user.get("name") or ""
        sis_id = enrollment.get("sis_user_id") or user.get("sis_user_id")
        student = str(enrollment["user_id"])
        students[student] = Student(source_id=student, name=str(name), sis_id=None if sis_id is None else str(sis_id))
        section = enrollment.get("course_section_id")
        first.setdefault(student, (line, section))
        if section is not None:
            enrollments.append(Enrollment(student_id=student, section_id=str(section)))
            placed |= {student} if str(section) in section_ids else set()
    unplaced = [SourceProblem(
        file=f"courses/{course_id}/enrollments", line=line, student_id=student,
        problem=f"student {student} ({shown(students[student].name)}) is enrolled in no section of the course "
                f"(section {shown(section)}); no grade of theirs can be placed",
        fix="Enroll the student in one of the course's sections in Canvas (in an SIS course, through the SIS "
            "import) and sync again.") for student, (line, section) in first.items() if student not in placed]
    return list(students.values()), enrollments, unplaced


def raw_id(raw: Any) -> str | None:
    try:
        return to_id(raw.get("id"), "id") if isinstance(raw, dict) else None
    except (ValueError, TypeError):
        return None


def distinct(rows: list[tuple[int, Any]], key: Any) -> tuple[list[Any], dict[Any, list[int]]]:
    """One of each key where its copies are all the same; the keys listed with different values, with their lines."""
    by_key: dict[Any, list[tuple[int, Any]]] = {}
    for line, value in rows:
        by_key.setdefault(key(value), []).append((line, value))
    kept, clashes = [], {}
    for k, copies in by_key.items():
        if all(value == copies[0][1] for _, value in copies):
            kept.append(copies[0][1])
        else:
            clashes[k] = [line for line, _ in copies]
    return kept, clashes


LISTED_TWICE = ("Sync again: Canvas can list a record twice when it changes during the read. If it stays, "
                "report it to your Canvas administrator.")


def read_gradebook(course_id: str, groups: list[Any], assignments: list[Any], submissions: list[Any]
                   ) -> tuple[list[Category], list[Assignment], list[Score], list[SourceProblem]]:
    """The course's assignment groups, assignments and submissions, row by row.

    A row that cannot be read, an id listed twice with different values, or a submission of an
    assignment the listing does not hold is a problem of the run (``source-row-unreadable``,
    its line the row's place in its listing), never the failure of the course: every other row
    is read and synced. An assignment with a problem is neither sent nor deleted, and nothing of
    its submissions is read; a submission whose grade cannot be read, or that is listed twice
    differently, is kept as unreadable (neither sent nor cleared).
    """
    base = f"courses/{course_id}"
    problems: list[SourceProblem] = []
    read_groups = []
    for line, raw in enumerate(groups, 1):
        try:
            read_groups.append((line, to_category(raw)))
        except ROW_ERRORS as exc:
            problems.append(SourceProblem(
                file=f"{base}/assignment_groups", line=line, problem=f"assignment group {raw_id(raw) or '(no id)'} "
                f"cannot be read: {exc}", fix="Correct the assignment group in Canvas and sync again."))
    categories, clashes = distinct(read_groups, lambda c: c.source_id)
    problems += [SourceProblem(file=f"{base}/assignment_groups", line=lines[-1], fix=LISTED_TWICE,
                               problem=f"assignment group {group} is listed {len(lines)} times with different values; "
                               "none is read") for group, lines in clashes.items()]

    read_assignments, withheld = [], set()
    for line, raw in enumerate(assignments, 1):
        try:
            read_assignments.append((line, to_assignment(raw)))
        except ROW_ERRORS as exc:
            assignment = raw_id(raw)
            withheld.add(assignment)
            problems.append(SourceProblem(
                file=f"{base}/assignments", line=line, assignment_id=assignment,
                problem=f"assignment {assignment or '(no id)'} cannot be read: {exc}",
                fix=f'Open the assignment in Canvas (add "/assignments/{assignment or "ID"}" to the end of your course '
                    "URL), correct the value named, save it and sync again."))
    kept, clashes = distinct(read_assignments, lambda a: a.source_id)
    withheld |= set(clashes)
    problems += [SourceProblem(file=f"{base}/assignments", line=lines[-1], assignment_id=assignment, fix=LISTED_TWICE,
                               problem=f"assignment {assignment} is listed {len(lines)} times with different values; "
                               "none is read") for assignment, lines in clashes.items()]
    listed = {a.source_id for a in kept if a.source_id not in withheld}

    read_scores = []
    for line, raw in enumerate(submissions, 1):
        where = f"{base}/students/submissions"
        try:
            score = to_score(raw)
        except ROW_ERRORS as exc:
            problems.append(SourceProblem(
                file=where, line=line, problem=f"submission {raw_id(raw) or '(no id)'} cannot be read: {exc}",
                fix="Sync again; if the row stays, report it to your Canvas administrator (a submission names its "
                    "assignment and its student)."))
            continue
        if score.assignment_id in withheld:
            continue  # its assignment's problem is on the run
        if score.assignment_id not in listed:
            problems.append(SourceProblem(
                file=where, line=line, assignment_id=score.assignment_id, student_id=score.student_id,
                problem=f"submission {raw_id(raw) or '(no id)'} is of assignment {score.assignment_id}, which the "
                        "course's assignments listing does not hold; it is not read",
                fix="Sync again: the assignment may have been added or deleted during the read."))
            continue
        read_scores.append((line, score))
    scores, clashes = distinct(read_scores, lambda s: (s.assignment_id, s.student_id))
    scores += [Score(assignment_id=assignment, student_id=student,
                     unreadable=f"Canvas listed {len(lines)} different submissions of it")
               for (assignment, student), lines in clashes.items()]
    return categories, [a for a in kept if a.source_id in listed], scores, problems


def merge_submissions(pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (assignment, student) from several listings: a row in both is the same submission.

    Only the same row is merged: two different rows of one (assignment, student) are both kept, for
    read_gradebook to read as a submission it cannot tell (neither sent nor cleared), whichever
    listing came last.
    """
    if len(pages) == 1:
        return pages[0]
    merged: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for page in pages:
        for row in page:
            copies = merged.setdefault((row.get("assignment_id"), row.get("user_id")), [])
            if row not in copies:
                copies.append(row)
    return [row for copies in merged.values() for row in copies]


class CanvasSource(Source):
    kind = "canvas"
    has_sync_switch = True  # "Sync to SIS" is the assignment's post_to_sis
    # Canvas ANDs graded_since and submitted_since (each a strict ">"): one listing each.
    incremental = Incremental("submissions", cursor_paths=("graded_at", "submitted_at"),
                              query_params=("graded_since", "submitted_since"))

    def __init__(self, client: CanvasClient) -> None:
        self.client = client

    def course_url(self, course_id: str) -> str:
        return f"{self.client.base_url}/courses/{course_id}"

    async def list_course_ids(self) -> list[str]:
        courses = await self.client.get_all("/courses")
        return [str(c["id"]) for c in courses]

    async def read_course(self, course_id: str) -> CourseSnapshot:
        return await self._read(course_id, None)

    async def read_changes(self, course_id: str, since: datetime) -> CourseSnapshot:
        return await self._read(course_id, since)

    async def _read(self, course_id: str, since: datetime | None) -> CourseSnapshot:
        c = f"/courses/{course_id}"
        sections_read = asyncio.ensure_future(self.client.get_all(f"{c}/sections"))
        course, sections, enrollments, groups, assignments, submission_pages = await asyncio.gather(
            self.client.get(c, [("include[]", "term")]),
            sections_read,
            self.client.get_all(
                f"{c}/enrollments", [("type[]", "StudentEnrollment"), ("state[]", "active")]
            ),
            self.client.get_all(f"{c}/assignment_groups"),
            self.client.get_all(f"{c}/assignments", [("include[]", "overrides")]),
            self._submission_pages(c, sections_read, since),
        )
        submissions = merge_submissions(submission_pages)
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
        students, enrolled, unplaced = read_roster(course_id, enrollments, {str(s["id"]) for s in sections})
        categories, read_assignments, scores, problems = read_gradebook(course_id, groups, assignments, submissions)
        return CourseSnapshot(
            course=Course(
                source_id=str(course["id"]),
                name=str(course.get("name") or ""),
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
            students=tuple(students),
            enrollments=tuple(enrolled),
            categories=tuple(categories),
            assignments=tuple(read_assignments),
            scores=tuple(scores),
            problems=tuple(unplaced + problems),
            grading_scheme=scheme,
            changed_since=since,
            cursor_value=self.incremental.last_value(submissions, since),
        )

    async def _submission_pages(self, course_path: str, sections_read: asyncio.Future[list[dict[str, Any]]],
                                since: datetime | None) -> list[list[dict[str, Any]]]:
        """The submissions listing(s): narrowed by the cursor, or whole, one listing per section side by side.

        Canvas pages this listing with bookmarks, one page after another; a course of 4,800
        submissions is 48 pages in a row. The same listing per section (Canvas has it at
        ``/sections/:id/students/submissions``) pages the sections side by side, for the same
        number of requests. A student in two sections comes twice and is merged.
        """
        every = [("student_ids[]", "all")]
        if since is not None:
            return list(await asyncio.gather(*(
                self.client.get_all(f"{course_path}/students/submissions", [*every, narrowed])
                for narrowed in self.incremental.requests(since))))
        sections = await sections_read
        if len(sections) < 2:
            return [await self.client.get_all(f"{course_path}/students/submissions", every)]
        return list(await asyncio.gather(*(
            self.client.get_all(f"/sections/{section['id']}/students/submissions", every) for section in sections)))

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
