"""A OneRoster CSV bundle as a source (S3): a zip the LMS or SIS exports, read into the canonical model.

**A passback course is one OneRoster class.** A class is what PowerTeacher Pro calls a
section (its ``sourcedId`` is the SIS section id), it has one teacher, and the gradebook
files hang off it: a lineItem belongs to one class, a result to one lineItem. A OneRoster
*course* is the catalogue entry (Algebra I) shared by many classes of many teachers;
making it one passback course would put several teachers' gradebooks in one run, one lock
and one history. So each active row of ``classes.csv`` is a course with one section (the
class itself, SIS id = its ``sourcedId``); ``Course.sis_id`` is its ``courseSourcedId``.

What is read, from the files the manifest marks ``bulk`` (see :mod:`.binding`):

* **students**: ``enrollments.csv`` rows of the class with role ``student``, the person
  from ``users.csv`` (``sourcedId`` is the student's id here; the SIS id the destination
  matches is ``identifier``, else the ``sourcedId``);
* **term**: the class's ``termSourcedIds`` in ``academicSessions.csv`` (several: from the
  first start to the last end);
* **categories**: ``categories.csv`` rows the class's lineItems use, each imported with
  ``destination_ref`` = its ``sourcedId`` (a OneRoster category exported from the SIS is
  the SIS's own category: PowerTeacher Pro's teacher category id);
* **assignments**: the class's ``lineItems.csv`` rows: points possible = ``resultValueMax``
  (``resultValueMin`` is not sent: PowerTeacher Pro scores start at 0), due date =
  ``dueDate`` on the day it is written in (an offset kept, ``Z`` read as UTC), always synced
  and published (what the export holds is what it means the SIS to receive);
* **scores** from ``results.csv``, by ``scoreStatus``: ``exempt`` -> excused (sent as
  Exempt); ``fully graded`` / ``partially graded`` -> the score; ``submitted`` -> the score
  if it has one, else ungraded; ``not submitted`` -> missing in 1.1 (which has no missing
  flag), ungraded in 1.2 unless ``missing`` is true (seed 000: missing does not pass, shows
  blank). In 1.2, ``late`` passes as late, ``missing`` true is missing whatever the score,
  ``incomplete`` true with no score is 0 (seed 000: "Incomplete: 0, Incomplete status not
  passed"), a ``textScore`` with no score of complete/pass is full credit and of
  incomplete/fail 0; ``inProgress`` is not read. Every enrolled student without a result
  row is ungraded, as Canvas lists an unsubmitted submission, so a grade taken out of the
  export is cleared where passback sent it.
* rows with ``status`` ``tobedeleted`` are left out, as if absent.

**A bad row is a problem, and the others go on.** A row that cannot be read (a field
count that does not match the header, a blank required field, a value outside the
binding's vocabulary, a non-numeric score, a reference to a class, lineItem or student the
bundle does not hold, a second row with the same ``sourcedId``) becomes a
:class:`~passback.model.SourceProblem` naming ``file line N`` with the fix, on the
snapshot of the class it belongs to (or of every class, when the row says none it can be
placed in); the first of two rows with one ``sourcedId`` is kept. What a bad row would
have said is withheld, never guessed: its grade is neither sent nor cleared, its lineItem
is not deleted in the destination (the problem names it), and the results of a student
or lineItem whose own row is bad are left out without a problem each.

The bundle is read whole once and kept while the file is unchanged (its size and
modification time), so ``sync --all`` reads it once. A bundle cannot be written to:
importing categories or fixing an assignment is done where the export comes from.
"""

from __future__ import annotations

import asyncio
import math
import os
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

from passback.connectors.base import Source
from passback.connectors.oneroster_csv.binding import (
    BOOLEANS,
    EXEMPT,
    NOT_SUBMITTED,
    SCORE_STATUSES,
    STATUSES,
    SUBMITTED,
    TO_BE_DELETED,
    Row,
    Table,
    read_tables,
)
from passback.errors import SourceError, SourceNotFound
from passback.model import (
    Assignment,
    Category,
    Course,
    CourseSnapshot,
    Enrollment,
    GradingType,
    Score,
    Section,
    SourceProblem,
    Student,
    Term,
)
from passback.model.values import AssignmentChanges

COMPLETE_WORDS = frozenset({"complete", "pass", "credit"})
INCOMPLETE_WORDS = frozenset({"incomplete", "fail", "no credit"})
EVERY_CLASS = None  # a problem no class can be named for: shown on every class's run


@dataclass(frozen=True)
class _Class:
    source_id: str
    title: str
    course_id: str
    code: str
    term_ids: tuple[str, ...]


@dataclass
class Bundle:
    """A bundle read whole: per class, what its snapshot is built from; and every problem."""

    path: str
    version: str
    classes: dict[str, _Class] = field(default_factory=dict)
    unreadable_classes: dict[str, SourceProblem] = field(default_factory=dict)
    terms: dict[str, Term] = field(default_factory=dict)
    course_codes: dict[str, str] = field(default_factory=dict)
    users: dict[str, Student] = field(default_factory=dict)
    students_of: dict[str, list[str]] = field(default_factory=dict)  # class -> students, in file order
    categories: dict[str, Category] = field(default_factory=dict)
    assignments: dict[str, list[Assignment]] = field(default_factory=dict)  # class -> its lineItems
    class_of_item: dict[str, str] = field(default_factory=dict)
    scores: dict[tuple[str, str], Score] = field(default_factory=dict)  # (lineItem, student)
    withheld: set[tuple[str, str]] = field(default_factory=set)  # (lineItem, student) whose row is a problem
    problems: list[tuple[str | None, SourceProblem]] = field(default_factory=list)

    def course_ids(self) -> list[str]:
        return sorted({*self.classes, *self.unreadable_classes})

    def snapshot(self, class_id: str) -> CourseSnapshot:
        found = self.classes.get(class_id)
        if found is None and class_id in self.unreadable_classes:
            problem = self.unreadable_classes[class_id]
            raise SourceError(f"Class {class_id} cannot be read: {problem.text}. {problem.fix}")
        if found is None:
            raise SourceNotFound(f"Class {class_id} does not exist in classes.csv of {self.path} (or is marked "
                                 "tobedeleted); a course of a OneRoster bundle is a class: give the sourcedId of a "
                                 "classes.csv row.")
        assignments = tuple(self.assignments.get(class_id, ()))
        students = [self.users[s] for s in self.students_of.get(class_id, ())]
        scores: list[Score] = []
        for assignment in assignments:
            for student in students:
                key = (assignment.source_id, student.source_id)
                if key in self.scores:
                    scores.append(self.scores[key])
                elif key not in self.withheld:
                    scores.append(Score(assignment_id=assignment.source_id, student_id=student.source_id))
        used = {a.category_id for a in assignments if a.category_id}
        return CourseSnapshot(
            course=Course(source_id=class_id, name=found.title or class_id,
                          code=found.code or self.course_codes.get(found.course_id) or None,
                          sis_id=found.course_id or None, term=self._term(found.term_ids)),
            sections=(Section(source_id=class_id, name=found.title or class_id, sis_id=class_id),),
            students=tuple(students),
            enrollments=tuple(Enrollment(student_id=s.source_id, section_id=class_id) for s in students),
            categories=tuple(c for c in self.categories.values() if c.source_id in used),
            assignments=assignments,
            scores=tuple(scores),
            problems=tuple(p for where, p in self.problems if where in (class_id, EVERY_CLASS)),
        )

    def _term(self, term_ids: tuple[str, ...]) -> Term | None:
        terms = [self.terms[t] for t in term_ids if t in self.terms]
        if not terms:
            return None
        if len(terms) == 1:
            return terms[0]
        starts = [t.start for t in terms if t.start]
        ends = [t.end for t in terms if t.end]
        return Term(source_id=",".join(t.source_id for t in terms), name=" + ".join(t.name for t in terms),
                    start=min(starts) if starts else None, end=max(ends) if ends else None)


class _Reader:
    """One pass over the tables, file by file in the order their references need."""

    def __init__(self, path: str, version: str, tables: dict[str, Table]) -> None:
        self.bundle = Bundle(path, version)
        self.tables = tables
        self.seen: dict[tuple[str, str], int] = {}  # (file, sourcedId) -> the line that holds it
        self.deleted: dict[str, set[str]] = {}  # file -> sourcedIds marked tobedeleted
        self.bad: dict[str, set[str]] = {}  # file -> sourcedIds whose row could not be read
        self.dropped: set[tuple[str, str]] = set()  # (class, student) enrollments marked tobedeleted
        self.unplaced: set[tuple[str, str]] = set()  # (class, student) enrollments whose row could not be read
        self.gone_items: set[str] = set()  # lineItems of classes that are gone (tobedeleted, or a problem of their own)

    # --- reporting ----------------------------------------------------------------------
    def problem(self, where: str | None, table: Table, row: Row | int, problem: str, fix: str,
                assignment_id: str | None = None, student_id: str | None = None) -> None:
        line = row if isinstance(row, int) else row.line
        self.bundle.problems.append((where, SourceProblem(file=table.file, line=line, problem=problem, fix=fix,
                                                          assignment_id=assignment_id, student_id=student_id)))

    def usable(self, table: Table, row: Row, where: str | None, required: tuple[str, ...],
               assignment_id: str | None = None, student_id: str | None = None) -> bool:
        """The row's shape, status, required fields and sourcedId: True when it can be read on."""
        source_id = row.get("sourcedId")

        def bad(problem: str, fix: str) -> bool:
            self.problem(where, table, row, problem, fix, assignment_id, student_id)
            if source_id:
                self.bad.setdefault(table.file, set()).add(source_id)
            return False

        if row.short or row.extra:
            count = len(table.header) - row.short + row.extra
            return bad(f"the row has {count} fields where the header has {len(table.header)}",
                       f"Give the row one field per column of the header (quote a field that holds a comma) in "
                       f"{table.file}, then export and sync again.")
        status = row.get("status").lower()
        if status and status not in STATUSES:
            return bad(f"status {row.get('status')!r} is not one of {', '.join(STATUSES)}",
                       "Leave status blank or write active (or tobedeleted for a row that was removed).")
        if status == TO_BE_DELETED:
            if source_id:
                self.deleted.setdefault(table.file, set()).add(source_id)
            return False
        blank = [c for c in required if not row.get(c) and c in table.header]
        if blank:
            return bad(f"{' and '.join(blank)} {'is' if len(blank) == 1 else 'are'} blank",
                       f"Fill in {', '.join(blank)} (the binding requires {'it' if len(blank) == 1 else 'them'}) "
                       f"in {table.file}, then export and sync again.")
        first = self.seen.get((table.file, source_id))
        if first is not None:
            self.problem(where, table, row, f"sourcedId {source_id} is also on line {first}; this row is not read",
                         f"Keep one row per sourcedId in {table.file}.", assignment_id, student_id)
            return False
        self.seen[(table.file, source_id)] = row.line
        return True

    def lacking(self, table: Table) -> None:
        if table.lacking:
            self.problem(EVERY_CLASS, table, 1, f"the header has no {', '.join(table.lacking)} column; every row is "
                         "read with it blank", f"Export {table.file} with its full OneRoster "
                         f"{self.bundle.version} header.")

    # --- the files ----------------------------------------------------------------------
    def read(self) -> Bundle:
        for name in self.tables:
            self.lacking(self.tables[name])
        for reader in (self.classes, self.sessions, self.courses, self.users, self.enrollments, self.categories,
                       self.line_items, self.results):
            reader()
        return self.bundle

    def classes(self) -> None:
        table = self.tables["classes.csv"]
        for row in table.rows:
            class_id = row.get("sourcedId")
            before = len(self.bundle.problems)
            if not self.usable(table, row, EVERY_CLASS if not class_id else class_id, ("sourcedId",)):
                if class_id and len(self.bundle.problems) > before and class_id not in self.bundle.classes:
                    self.bundle.unreadable_classes[class_id] = self.bundle.problems.pop()[1]
                continue
            self.bundle.classes[class_id] = _Class(
                class_id, row.get("title"), row.get("courseSourcedId"), row.get("classCode"),
                tuple(t.strip() for t in row.get("termSourcedIds").split(",") if t.strip()))

    def sessions(self) -> None:
        table = self.tables.get("academicSessions.csv")
        for row in table.rows if table else ():
            assert table is not None
            if not self.usable(table, row, EVERY_CLASS, ("sourcedId", "startDate", "endDate")):
                continue
            try:
                start, end = _day(row.get("startDate")), _day(row.get("endDate"))
            except ValueError as exc:
                self.problem(EVERY_CLASS, table, row, str(exc), "Write startDate and endDate as YYYY-MM-DD.")
                continue
            source_id = row.get("sourcedId")
            self.bundle.terms[source_id] = Term(source_id=source_id, name=row.get("title") or source_id,
                                                start=start, end=end)

    def courses(self) -> None:
        table = self.tables.get("courses.csv")
        for row in table.rows if table else ():
            assert table is not None
            if self.usable(table, row, EVERY_CLASS, ("sourcedId",)):
                self.bundle.course_codes[row.get("sourcedId")] = row.get("courseCode")

    def users(self) -> None:
        table = self.tables["users.csv"]
        for row in table.rows:
            if not self.usable(table, row, EVERY_CLASS, ("sourcedId",)):
                continue
            source_id = row.get("sourcedId")
            given, family = row.get("preferredGivenName") or row.get("givenName"), row.get("familyName")
            name = f"{family}, {given}" if family and given else family or given or source_id
            self.bundle.users[source_id] = Student(source_id=source_id, name=name,
                                                   sis_id=row.get("identifier") or source_id)

    def enrollments(self) -> None:
        table = self.tables["enrollments.csv"]
        for row in table.rows:
            class_id, user_id = row.get("classSourcedId"), row.get("userSourcedId")
            where = class_id if class_id in self.bundle.classes else EVERY_CLASS
            required = ("sourcedId", "classSourcedId", "userSourcedId", "role")
            if not self.usable(table, row, where, required, student_id=user_id or None):
                if row.get("status").lower() == TO_BE_DELETED:
                    self.dropped.add((class_id, user_id))
                elif class_id and user_id:
                    self.unplaced.add((class_id, user_id))
                continue
            if row.get("role").lower() != "student":
                continue  # teachers, aides, proctors: not in the gradebook
            if class_id not in self.bundle.classes:
                if class_id not in self.deleted.get("classes.csv", set()) | set(self.bundle.unreadable_classes):
                    self.problem(EVERY_CLASS, table, row, f"enrollment {row.get('sourcedId')} names class {class_id}, "
                                 "which classes.csv does not hold", "Correct classSourcedId to a class of classes.csv, "
                                 "or add the class.", student_id=user_id)
                continue
            if user_id not in self.bundle.users:
                if user_id in self.bad.get("users.csv", set()):
                    self.unplaced.add((class_id, user_id))  # its users.csv row is the problem shown
                elif user_id in self.deleted.get("users.csv", set()):
                    self.dropped.add((class_id, user_id))
                else:
                    self.problem(class_id, table, row, f"enrollment {row.get('sourcedId')} names user {user_id}, "
                                 "who is not in users.csv", "Correct userSourcedId to the student's sourcedId in "
                                 "users.csv, or add the student to users.csv.", student_id=user_id)
                    self.unplaced.add((class_id, user_id))
                continue
            students = self.bundle.students_of.setdefault(class_id, [])
            if user_id not in students:
                students.append(user_id)

    def categories(self) -> None:
        table = self.tables.get("categories.csv")
        for row in table.rows if table else ():
            assert table is not None
            if self.usable(table, row, EVERY_CLASS, ("sourcedId",)):
                source_id = row.get("sourcedId")
                self.bundle.categories[source_id] = Category(source_id=source_id, name=row.get("title") or source_id,
                                                             imported=True, destination_ref=source_id)

    def line_items(self) -> None:
        table = self.tables["lineItems.csv"]
        for row in table.rows:
            item_id, class_id = row.get("sourcedId"), row.get("classSourcedId")
            known = class_id in self.bundle.classes
            where = class_id if known else EVERY_CLASS
            if not self.usable(table, row, where, ("sourcedId", "title", "classSourcedId"), assignment_id=item_id or None):
                continue
            if not known:
                if class_id in self.deleted.get("classes.csv", set()) | set(self.bundle.unreadable_classes):
                    self.gone_items.add(item_id)
                    continue  # the class is gone (or is its own problem): so is its gradebook
                self.problem(EVERY_CLASS, table, row, f"lineItem {item_id} names class {class_id}, which classes.csv "
                             "does not hold", "Correct classSourcedId to the sourcedId of the class (the SIS section) "
                             "the lineItem belongs to, or add the class to classes.csv.", assignment_id=item_id)
                self.bad.setdefault(table.file, set()).add(item_id)
                continue
            try:
                assignment = self._assignment(row)
            except ValueError as exc:
                self.problem(class_id, table, row, str(exc.args[0]), str(exc.args[1]), assignment_id=item_id)
                self.bad.setdefault(table.file, set()).add(item_id)
                continue
            self.bundle.assignments.setdefault(class_id, []).append(assignment)
            self.bundle.class_of_item[item_id] = class_id

    def _assignment(self, row: Row) -> Assignment:
        maximum = row.get("resultValueMax")
        points = _number(maximum, "resultValueMax", "Give resultValueMax the points possible as a number "
                         "(for example 10 or 12.5).")
        due = row.get("dueDate")
        try:
            due_at = _moment(due) if due else None
        except ValueError:
            raise ValueError(f"dueDate {due!r} is not an ISO 8601 date or date-time",
                             "Write dueDate as a date-time such as 2026-09-15T23:59:00-05:00 (or a date, "
                             "2026-09-15).") from None
        return Assignment(source_id=row.get("sourcedId"), name=row.get("title"),
                          description=row.get("description") or None, due_at=due_at, points_possible=points,
                          grading_type=GradingType.POINTS, category_id=row.get("categorySourcedId") or None)

    def results(self) -> None:
        table = self.tables["results.csv"]
        for row in table.rows:
            item_id, student_id = row.get("lineItemSourcedId"), row.get("studentSourcedId")
            class_id = self.bundle.class_of_item.get(item_id)
            where = class_id if class_id else EVERY_CLASS
            placed = {"assignment_id": item_id if class_id else None, "student_id": student_id or None}
            if not self.usable(table, row, where, ("sourcedId", "lineItemSourcedId", "studentSourcedId"), **placed):
                if class_id and student_id and row.get("status").lower() != TO_BE_DELETED:
                    self.bundle.withheld.add((item_id, student_id))  # a bad row: its grade neither sent nor cleared
                continue
            if class_id is None:
                if item_id not in self.bad.get("lineItems.csv", set()) | self.deleted.get("lineItems.csv", set()) \
                        and item_id not in self.gone_items:
                    self.problem(EVERY_CLASS, table, row, f"result {row.get('sourcedId')} names lineItem {item_id}, "
                                 "which lineItems.csv does not hold", "Correct lineItemSourcedId to a lineItem of "
                                 "lineItems.csv, or add the lineItem.", student_id=student_id)
                continue
            if not self._placed(table, row, class_id, item_id, student_id):
                continue
            key = (item_id, student_id)
            if key in self.bundle.scores:
                self.problem(class_id, table, row, f"student {student_id} already has a result for lineItem "
                             f"{item_id}; this row is not read", "Keep one result per student and lineItem.",
                             item_id, student_id)
                continue
            try:
                score = self._score(row)
            except ValueError as exc:
                self.problem(class_id, table, row, str(exc.args[0]), str(exc.args[1]), item_id, student_id)
                self.bundle.withheld.add(key)
                continue
            self.bundle.scores[key] = score

    def _placed(self, table: Table, row: Row, class_id: str, item_id: str, student_id: str) -> bool:
        """The result's student is a student of the lineItem's class; else a problem, or left out in silence."""
        if (class_id, student_id) in self.dropped:
            return False  # the student left the class: their old results are not the SIS's business
        if (class_id, student_id) in self.unplaced or student_id in self.bad.get("users.csv", set()):
            self.bundle.withheld.add((item_id, student_id))
            return False  # the student's own row is the problem shown
        if student_id not in self.bundle.users:
            if student_id not in self.deleted.get("users.csv", set()):
                self.problem(class_id, table, row, f"result {row.get('sourcedId')} names student {student_id}, who is "
                             "not in users.csv", "Correct studentSourcedId to the student's sourcedId in users.csv, "
                             f"or add the student (and an enrollment in class {class_id}).", item_id, student_id)
            return False
        if student_id not in self.bundle.students_of.get(class_id, ()):
            self.problem(class_id, table, row, f"student {student_id} has no student enrollment in class {class_id} "
                         "(enrollments.csv)", f"Enroll the student in class {class_id} in enrollments.csv, or take "
                         "the result out of the export.", item_id, student_id)
            return False
        return True

    def _score(self, row: Row) -> Score:
        """One result, by its scoreStatus and (1.2) its flags; ValueError(problem, fix) when it cannot be read."""
        status = row.get("scoreStatus").lower()
        if status not in SCORE_STATUSES:
            said = repr(row.get("scoreStatus")) if status else "blank"
            raise ValueError(f"scoreStatus is {said}, not one of: {', '.join(SCORE_STATUSES)}",
                             "Give the result a scoreStatus from the OneRoster vocabulary.")
        v12 = self.bundle.version == "1.2"
        late, missing, incomplete = (_flag(row, name) if v12 else False for name in ("late", "missing", "incomplete"))
        base = {"assignment_id": row.get("lineItemSourcedId"), "student_id": row.get("studentSourcedId")}
        if status == EXEMPT:
            return Score(**base, excused=True, late=late)
        if status == NOT_SUBMITTED:
            return Score(**base, missing=missing or not v12, late=late)
        text = row.get("score")
        points = _number(text, "score", "Give score the points earned as a number, or set scoreStatus to exempt "
                         "or not submitted.")
        text_score = row.get("textScore") if v12 else ""
        if points is None and text_score:
            word = text_score.lower()
            maximum = self._maximum(row)
            if word in COMPLETE_WORDS and maximum is not None:
                points = maximum  # seed 000: Complete passes as full credit
            elif word in INCOMPLETE_WORDS:
                points = 0.0  # seed 000: Incomplete passes as 0
            else:
                raise ValueError(f"textScore {text_score!r} has no score in points beside it",
                                 "Give the result a score in points (PowerTeacher Pro holds points).")
        if points is None and incomplete:
            points = 0.0  # seed 000: Incomplete passes as 0, its status is not passed
        if points is None and status != SUBMITTED:
            raise ValueError(f"scoreStatus is {status!r} but score is blank",
                             "Give score the points earned, or set scoreStatus to not submitted or exempt.")
        return Score(**base, score=points, grade=text_score or None, graded=points is not None, late=late,
                     missing=missing)

    def _maximum(self, row: Row) -> float | None:
        class_id = self.bundle.class_of_item.get(row.get("lineItemSourcedId"), "")
        for assignment in self.bundle.assignments.get(class_id, ()):
            if assignment.source_id == row.get("lineItemSourcedId"):
                return assignment.points_possible
        return None


def _number(text: str, column: str, fix: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not a number", fix) from None
    if not math.isfinite(value):
        raise ValueError(f"{column} {text!r} is not a number", fix)
    return value


def _flag(row: Row, column: str) -> bool:
    value = row.get(column).lower()
    if value and value not in BOOLEANS:
        raise ValueError(f"{column} {row.get(column)!r} is not true or false",
                         f"Write {column} as true or false (or leave it blank for false).")
    return value == "true"


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _moment(text: str) -> datetime:
    """A date-time as written (its offset kept, so its day is the exporter's); a date alone is that day's end."""
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), time(23, 59))
    return datetime.fromisoformat(text)


def map_tables(where: str, version: str, tables: dict[str, Table]) -> Bundle:
    """OneRoster rows (by the CSV binding's file and column names) mapped to every class's gradebook.

    The one mapping of OneRoster to the canonical model, shared by both bindings: the CSV
    bundle's tables, and the REST binding's objects flattened into the same tables
    (:mod:`passback.connectors.oneroster.source`), so a class reads the same whichever way
    the SIS serves it. ``version`` is ``1.1`` or ``1.2``; ``tables`` is keyed by file name
    (``results.csv``), each with the required files of :data:`.binding.REQUIRED_FILES`. Pure.
    """
    return _Reader(where, version, tables).read()


def parse_bundle(path: str, data: bytes) -> Bundle:
    """The whole bundle, read: every class's gradebook and every problem. Pure (no I/O)."""
    manifest, tables = read_tables(path, data)
    return map_tables(path, manifest.version, tables)


class OneRosterCsvSource(Source):
    """A zip on disk, read whole when it changed; courses are its classes."""

    kind = "oneroster_csv"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._cache: tuple[tuple[int, int], Bundle] | None = None  # (mtime_ns, size) -> the bundle read
        self._lock = asyncio.Lock()

    async def bundle(self) -> Bundle:
        async with self._lock:
            return await asyncio.to_thread(self._read)

    def _read(self) -> Bundle:
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            raise SourceError(f"There is no OneRoster bundle at {self.path} ({exc.strerror}); export it there, or "
                              "save the connection with the bundle's path.") from exc
        version = (stat.st_mtime_ns, stat.st_size)
        if self._cache is None or self._cache[0] != version:
            self._cache = (version, parse_bundle(str(self.path), self.path.read_bytes()))
        return self._cache[1]

    async def list_course_ids(self) -> list[str]:
        return (await self.bundle()).course_ids()

    async def read_course(self, course_id: str) -> CourseSnapshot:
        return (await self.bundle()).snapshot(course_id)

    async def create_category(self, course_id: str, name: str, destination_ref: str) -> str:
        raise SourceError("A OneRoster CSV bundle cannot be written to: add the category in the system that "
                          "exports the bundle (its categories.csv sourcedId is the PowerTeacher Pro category id).")

    async def update_assignment(self, course_id: str, assignment_id: str, changes: AssignmentChanges) -> None:
        raise SourceError(f"A OneRoster CSV bundle cannot be written to: change lineItem {assignment_id} in the "
                          "system that exports the bundle, then export it again.")
