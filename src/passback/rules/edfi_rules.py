"""Seed 003's reporting rules for posted grades, in the order the spec gives them."""

from __future__ import annotations

from dataclasses import dataclass, field

from passback.model import GradingPeriod, PostedGrade, SectionAssociation
from passback.rules.findings import Finding

FINAL_GRADE = "uri://ed-fi.org/GradeTypeDescriptor#Final"  # the Ed-Fi standard's 'Final': the seed's 'FG'
AssociationKey = tuple[str, str, int]  # (student unique id, section identifier, school year)


@dataclass(frozen=True)
class EdFiPreferences:
    """Resource preferences (C5): what the district mapped, and the resource toggle."""

    grade_types: dict[str, str]  # grading task -> GradeTypeDescriptor
    grading_periods: dict[str, tuple[str, ...]]  # grading task -> GradingPeriodDescriptors
    state_codes: dict[str, int]  # posted letter grade -> state grade code 0-4
    school_years: frozenset[int]
    enabled: bool = True
    subject_descriptors: dict[str, str] = field(default_factory=dict)  # SCED subject area -> AcademicSubjectDescriptor
    final_grade_type: str = FINAL_GRADE  # the 'FG' GradeTypeDescriptor: "Always report 'FG' (Final Grade)"
    not_final_tasks: frozenset[str] = frozenset()  # tasks not marked both 'final' and 'state reported'


def _context(grade: PostedGrade) -> dict[str, object]:
    return {"posted_id": grade.source_id, "student_id": grade.student_id, "student_name": grade.student_name,
            "course_number": grade.course_number, "course_name": grade.course_name,
            "grading_task": grade.grading_task, "school_id": grade.school_id, "school_year": grade.school_year,
            "term_name": grade.term.name, "term_start": grade.term.start.isoformat() if grade.term.start else None,
            "term_end": grade.term.end.isoformat() if grade.term.end else None}


def reportable(grade: PostedGrade, prefs: EdFiPreferences) -> Finding | None:
    """Why this posted grade is not reported at all, or None when it is."""
    if grade.standard:
        return Finding("edfi-standard", _context(grade))
    if not grade.course_active:
        return Finding("edfi-course-inactive", _context(grade))
    if grade.school_exclude or grade.calendar_exclude:
        return Finding("edfi-excluded", _context(grade) | {"why": "school or calendar exclude"})
    if grade.state_report_exclude:
        return Finding("edfi-excluded", _context(grade) | {"why": "course marked State Report Exclude"})
    if grade.grading_task not in prefs.grade_types:
        return Finding("edfi-grading-task-not-mapped", _context(grade))
    if prefs.grade_types[grade.grading_task] != prefs.final_grade_type:
        return Finding("edfi-not-final-grade", _context(grade) | {
            "grade_type": prefs.grade_types[grade.grading_task], "final_grade_type": prefs.final_grade_type})
    if grade.grading_task in prefs.not_final_tasks:
        return Finding("edfi-task-not-final", _context(grade))
    if not prefs.grading_periods.get(grade.grading_task):
        return Finding("edfi-grading-period-not-mapped", _context(grade))
    if grade.school_year not in prefs.school_years:
        return Finding("edfi-year-not-configured", _context(grade))
    return None


def association_for(grade: PostedGrade, associations: dict[AssociationKey, SectionAssociation]
                    ) -> SectionAssociation | Finding:
    """The student's section association in the school year of the course's calendar (the
    grade's scope year), or the seed's error: an association of another year is not it."""
    found = associations.get((grade.student_id, grade.section_id, grade.school_year))
    return found if found is not None else Finding("edfi-missing-student-section-association", _context(grade))


def eligible_periods(task_periods: tuple[str, ...], school_id: str, school_year: int, start: object, end: object,
                     periods: list[GradingPeriod]) -> list[GradingPeriod]:
    """Mapped grading periods of the school and year whose end date is within the term."""
    wanted = set(task_periods)
    return sorted((p for p in periods
                   if p.descriptor in wanted and p.school_id == school_id and p.school_year == school_year
                   and start is not None and end is not None and start <= p.end <= end),  # type: ignore[operator]
                  key=lambda p: (p.end, p.name))


def periods_for(grade: PostedGrade, prefs: EdFiPreferences, periods: list[GradingPeriod],
                memo: dict[tuple[object, ...], list[GradingPeriod]] | None = None) -> list[GradingPeriod] | Finding:
    """Every mapped grading period whose end date is within the posted term (seed 003).

    ``memo`` remembers the answer per (task, school, year, term): a district posts
    thousands of grades to the same few terms.
    """
    key = (grade.grading_task, grade.school_id, grade.school_year, grade.term.start, grade.term.end)
    chosen = memo.get(key) if memo is not None else None
    if chosen is None:
        chosen = eligible_periods(prefs.grading_periods.get(grade.grading_task, ()), grade.school_id,
                                  grade.school_year, grade.term.start, grade.term.end, periods)
        if memo is not None:
            memo[key] = chosen
    if not chosen:
        return Finding("edfi-no-overlapping-grading-period", _context(grade))
    return chosen


def duplicate_of(grade: PostedGrade, holder: str, key: tuple[object, ...]) -> Finding:
    """Another posted grade gives the same Ed-Fi Grade natural key, and keeps it (see the catalogue)."""
    return Finding("edfi-duplicate-natural-key", _context(grade) | {
        "holder": holder, "grade_type": key[0], "grading_period": key[2], "section_id": grade.section_id})
