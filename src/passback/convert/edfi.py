"""A posted grade as Ed-Fi Grade records: one per grading period it reports to.

The natural key of a Grade is its grade type, its grading period reference and its
student section association reference; everything else is a value that an upsert
(POST) may change. ``letterGradeEarned`` carries the state grade code (0-4) mapped
from the posted grade, and is left out when there is no mapping; the Minnesota extension
(``_ext.mn``) carries the subject area descriptor and the credits where the seed says so.
"""

from __future__ import annotations

from typing import Any

from passback.model import GradingPeriod, PostedGrade, SectionAssociation
from passback.rules.edfi_rules import EdFiPreferences

COLLEGE_CREDIT_TASK = "COLLEGECREDIT"


def period_reference(period: GradingPeriod) -> dict[str, Any]:
    return {"gradingPeriodDescriptor": period.descriptor, "gradingPeriodName": period.name,
            "schoolId": int(period.school_id), "schoolYear": period.school_year}


def association_reference(association: SectionAssociation) -> dict[str, Any]:
    return {"beginDate": association.begin_date.isoformat(), "localCourseCode": association.local_course_code,
            "schoolId": int(association.school_id), "schoolYear": association.school_year,
            "sectionIdentifier": association.section_id, "sessionName": association.session_name,
            "studentUniqueId": association.student_id}


def natural_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """The identity of a Grade in the ODS, as a hashable tuple."""
    period = record["gradingPeriodReference"]
    ssa = record["studentSectionAssociationReference"]
    return (record["gradeTypeDescriptor"], period["gradingPeriodDescriptor"], period["gradingPeriodName"],
            int(period["schoolId"]), int(period["schoolYear"]), ssa["beginDate"], ssa["localCourseCode"],
            int(ssa["schoolId"]), int(ssa["schoolYear"]), ssa["sectionIdentifier"], ssa["sessionName"],
            ssa["studentUniqueId"])


def state_code(grade: PostedGrade, prefs: EdFiPreferences) -> int | None:
    if grade.letter is None:
        return None
    code = prefs.state_codes.get(grade.letter.strip().upper())
    return code if code is not None and 0 <= code <= 4 else None


def sced_code(value: str | None) -> str | None:
    """A SCED subject area code as the mappings keep it (two digits), or None when not numeric."""
    text = (value or "").strip()
    return text.zfill(2) if text.isdigit() else None


def subject_descriptor(grade: PostedGrade, prefs: EdFiPreferences) -> str | None:
    """The state's AcademicSubjectDescriptor for the grade's SCED subject area: reported only when
    the code is numeric and mapped (seed 003: "Any item not mapped will not report")."""
    code = sced_code(grade.subject_code)
    return prefs.subject_descriptors.get(code) if code is not None else None


def grade_records(grade: PostedGrade, prefs: EdFiPreferences, association: SectionAssociation,
                  periods: list[GradingPeriod]) -> list[dict[str, Any]]:
    records = []
    subject = subject_descriptor(grade, prefs)
    for period in periods:
        record: dict[str, Any] = {
            "gradeTypeDescriptor": prefs.grade_types[grade.grading_task],
            "gradingPeriodReference": period_reference(period),
            "studentSectionAssociationReference": association_reference(association),
        }
        code = state_code(grade, prefs)
        if code is not None:
            record["letterGradeEarned"] = str(code)
        extension: dict[str, Any] = {}
        if grade.grading_task_code == COLLEGE_CREDIT_TASK:
            if grade.credits_earned is not None:
                extension["collegeCreditEarned"] = grade.credits_earned
            if grade.score is not None or grade.letter is not None:
                extension["collegeGradeEarned"] = grade.letter if grade.letter is not None else f"{grade.score:g}"
        if grade.credits_earned is not None:
            extension["localCreditEarned"] = grade.credits_earned
        if subject is not None:
            extension["academicSubjectDescriptor"] = subject
        if extension:
            record["_ext"] = {"mn": extension}
        records.append(record)
    return records
