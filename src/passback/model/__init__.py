"""The canonical gradebook (M1): what every source is read into and every rule reads.

Sources differ in names and shapes; the rules and the conversion tables of the seeds
are written once, against these types. Everything here is immutable so a snapshot can
be planned twice and give the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class GradingType(StrEnum):
    POINTS = "points"
    PERCENT = "percent"
    LETTER = "letter"
    COMPLETE_INCOMPLETE = "complete_incomplete"
    PASS_FAIL = "pass_fail"
    GPA_SCALE = "gpa_scale"
    NOT_GRADED = "not_graded"


class AssignedTo(StrEnum):
    EVERYONE = "everyone"
    SECTIONS = "sections"
    INDIVIDUALS = "individuals"


class Term(_Frozen):
    source_id: str
    name: str
    start: date | None = None
    end: date | None = None


class Course(_Frozen):
    source_id: str
    name: str
    code: str | None = None
    sis_id: str | None = None
    term: Term | None = None
    time_zone: str | None = None
    html_url: str | None = None


class Section(_Frozen):
    source_id: str
    name: str
    sis_id: str | None = None


class Student(_Frozen):
    source_id: str
    name: str
    sis_id: str | None = None


class Enrollment(_Frozen):
    student_id: str
    section_id: str


class Category(_Frozen):
    """An assignment group / grading category.

    ``destination_ref`` is the destination category id the group was imported from
    (Canvas keeps it in ``sis_source_id``); it is the stable link a rename cannot break.
    """

    source_id: str
    name: str
    imported: bool = False
    destination_ref: str | None = None


class GradingSchemeEntry(_Frozen):
    name: str
    min_fraction: float


class Assignment(_Frozen):
    source_id: str
    name: str
    description: str | None = None
    due_at: datetime | None = None
    points_possible: float | None = None
    grading_type: GradingType = GradingType.POINTS
    category_id: str | None = None
    assigned_to: AssignedTo = AssignedTo.EVERYONE
    section_ids: tuple[str, ...] = ()
    mastery_paths: bool = False
    sync: bool = True
    published: bool = True
    html_url: str | None = None
    unreadable: str | None = None  # why the source's item could not be read as a gradebook column


class Score(_Frozen):
    """One student's result on one assignment, as the source holds it now.

    ``graded`` is false for a submission nobody has graded (or whose grade was
    removed); ``resubmitted`` marks a grade that no longer matches the current
    submission (Canvas ``grade_matches_current_submission`` false).
    """

    assignment_id: str
    student_id: str
    score: float | None = None
    grade: str | None = None
    graded: bool = False
    late: bool = False
    missing: bool = False
    excused: bool = False
    resubmitted: bool = False
    graded_at: datetime | None = None
    unreadable: str | None = None  # why the source's value could not be read (neither sent nor cleared)


class SourceProblem(_Frozen):
    """A row of a file-based source that could not be read (``results.csv line 17: ...``).

    A file source is read whole, so one bad row must not stop the others: it becomes a
    problem, recorded on the run as an error with its own fix, and what it would have
    said is withheld. ``assignment_id`` names the assignment the row belongs to, when the
    row says: such an assignment is neither deleted nor cleared in the destination while
    its row cannot be read (a typo in an export must not remove a column the SIS holds).
    """

    file: str
    line: int
    problem: str
    fix: str
    assignment_id: str | None = None
    student_id: str | None = None

    @property
    def text(self) -> str:
        return f"{self.file} line {self.line}: {self.problem}"


class CourseSnapshot(_Frozen):
    """Everything passback needs of one course, read at one moment.

    ``problems`` are the rows a file-based source could not read (an API source has none):
    the snapshot holds every good row, the run records each problem as an error.
    """

    course: Course
    sections: tuple[Section, ...]
    students: tuple[Student, ...]
    enrollments: tuple[Enrollment, ...]
    categories: tuple[Category, ...]
    assignments: tuple[Assignment, ...]
    scores: tuple[Score, ...]
    grading_scheme: tuple[GradingSchemeEntry, ...] = ()
    problems: tuple[SourceProblem, ...] = ()
    # An incremental read: ``scores`` holds only what changed after this instant (a score
    # absent is unchanged, not gone); None for a full read.
    changed_since: datetime | None = None
    cursor_value: datetime | None = None  # the source's cursor after this read (the newest change seen)

    @property
    def partial(self) -> bool:
        return self.changed_since is not None

    def student_sections(self) -> dict[str, tuple[str, ...]]:
        by_student: dict[str, list[str]] = {}
        for enrollment in self.enrollments:
            by_student.setdefault(enrollment.student_id, []).append(enrollment.section_id)
        return {student: tuple(sections) for student, sections in by_student.items()}


# --- the destination side -----------------------------------------------------------


class DestinationCategory(_Frozen):
    dest_id: str
    section_id: str
    name: str
    active: bool = True


class DestinationSection(_Frozen):
    """A destination class section: its id and the students it holds (by SIS id)."""

    dest_id: str
    name: str
    sis_id: str | None = None
    student_ids: tuple[str, ...] = ()


# --- posted grades (state reporting, seed 003) -------------------------------------------


class PostedGrade(_Frozen):
    """A grade posted to a grading task (a term or semester final) in the SIS.

    ``source_id`` is stable across changes of the grade itself: a changed score is an
    update of the same posted grade, not a new one. The flags carry the SIS's own
    exclusions, which seed 003 says decide whether the grade is reported at all.
    """

    source_id: str
    student_id: str  # the state's student id (Ed-Fi studentUniqueId)
    student_name: str
    section_id: str  # the section identifier the state knows
    course_number: str
    course_name: str
    school_id: str
    school_year: int
    grading_task: str  # e.g. "S1 Final"
    grading_task_code: str | None = None  # "COLLEGECREDIT" marks a college-credit task
    term: Term
    score: float | None = None
    letter: str | None = None
    posted_at: datetime | None = None
    deleted: bool = False
    standard: bool = False
    course_active: bool = True
    state_report_exclude: bool = False
    school_exclude: bool = False
    calendar_exclude: bool = False
    credits_earned: float | None = None
    subject_code: str | None = None  # SCED subject area


class GradingPeriod(_Frozen):
    descriptor: str  # uri://ed-fi.org/GradingPeriodDescriptor#...
    name: str
    school_id: str
    school_year: int
    begin: date
    end: date


@dataclass(frozen=True, slots=True)
class SectionAssociation:
    """A StudentSectionAssociation's natural key, as the ODS holds it.

    A plain dataclass: a state-reporting run holds tens of thousands of them.
    """

    student_id: str
    section_id: str
    local_course_code: str
    school_id: str
    school_year: int
    session_name: str
    begin_date: date
