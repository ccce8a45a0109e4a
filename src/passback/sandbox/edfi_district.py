"""A generated state-reporting district: the ODS holds the sessions, grading periods,
sections and student section associations; the SIS holds posted grades for them.

Semester 1 runs from 10 August to 18 December 2026 (school year 2027): two quarters and
a semester grading period end inside it, so a grade on a task mapped to the quarters
reports twice and one mapped to the semester once (seed 003).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from typing import Any

from passback.emulators.edfi import KEYS, empty_state
from passback.model import PostedGrade, Term
from passback.rules.edfi_rules import FINAL_GRADE, EdFiPreferences

SCHOOL_ID, SCHOOL_YEAR = 255901001, 2027
SESSION = "2026-2027 Fall Semester"
TERM = Term(source_id="S1", name="Semester 1", start=date(2026, 8, 10), end=date(2026, 12, 18))
PERIOD = "uri://ed-fi.org/GradingPeriodDescriptor#"
PERIODS = (("First Quarter", date(2026, 8, 10), date(2026, 10, 9)),
           ("Second Quarter", date(2026, 10, 12), date(2026, 12, 18)),
           ("First Semester", date(2026, 8, 10), date(2026, 12, 18)),
           ("Third Quarter", date(2027, 1, 5), date(2027, 3, 12)))
LETTERS = ("A", "B", "C", "D", "F")
STATE_FINAL_GRADE = "uri://education.mn.gov/GradeTypeDescriptor#FG"  # a state's own 'FG' descriptor
MATHEMATICS = "uri://education.mn.gov/AcademicSubjectDescriptor#02"  # SCED subject area 02
DESCRIPTORS = (
    FINAL_GRADE, STATE_FINAL_GRADE, "uri://ed-fi.org/GradeTypeDescriptor#Grading Period",
    "uri://ed-fi.org/TermDescriptor#Fall Semester", MATHEMATICS, *(PERIOD + name for name, _, _ in PERIODS),
)


@dataclass(frozen=True)
class EdFiShape:
    grades: int = 200
    students_per_section: int = 25
    seed: int = 7


def default_preferences() -> EdFiPreferences:
    """The semester final, the course's task marked 'final' and 'state reported', mapped to 'FG'
    (the only grade type reported) and to the semester grading period."""
    return EdFiPreferences(
        grade_types={"S1 Final": FINAL_GRADE},
        grading_periods={"S1 Final": (PERIOD + "First Semester",)},
        state_codes={"A": 4, "B": 3, "C": 2, "D": 1, "F": 0},
        school_years=frozenset({SCHOOL_YEAR}),
    )


def _insert(state: dict[str, Any], resource: str, record: dict[str, Any], record_id: str) -> None:
    state["resources"][resource][record_id] = record
    KEYS[resource](record)  # a record the emulator could not index is a generator bug


def generate(shape: EdFiShape, client_id: str = "sandbox-edfi", client_secret: str = "sandbox-edfi-secret"
             ) -> tuple[dict[str, Any], list[PostedGrade]]:
    rng = random.Random(shape.seed)
    state = empty_state()
    state["clients"][client_id] = client_secret
    state["descriptors"] = list(DESCRIPTORS)
    school = {"schoolId": SCHOOL_ID}
    year = {"schoolYear": SCHOOL_YEAR}
    _insert(state, "sessions", {"sessionName": SESSION, "schoolReference": school, "schoolYearTypeReference": year,
                                "beginDate": TERM.start.isoformat(), "endDate": TERM.end.isoformat(),
                                "termDescriptor": "uri://ed-fi.org/TermDescriptor#Fall Semester",
                                "totalInstructionalDays": 85}, "session-1")
    for index, (name, begin, end) in enumerate(PERIODS, start=1):
        _insert(state, "gradingPeriods", {"gradingPeriodDescriptor": PERIOD + name, "gradingPeriodName": name,
                                          "schoolReference": school, "schoolYearTypeReference": year,
                                          "beginDate": begin.isoformat(), "endDate": end.isoformat(),
                                          "periodSequence": index, "totalInstructionalDays": 45}, f"period-{index}")
    posted: list[PostedGrade] = []
    sections = max(1, -(-shape.grades // shape.students_per_section))
    for section_index in range(sections):
        course = f"MATH{100 + section_index % 40:03d}"
        section_id = f"{course}-{section_index:05d}"
        offering = {"localCourseCode": course, "schoolId": SCHOOL_ID, "schoolYear": SCHOOL_YEAR,
                    "sessionName": SESSION}
        _insert(state, "sections", {"sectionIdentifier": section_id, "courseOfferingReference": offering},
                f"section-{section_index}")
        for seat in range(shape.students_per_section):
            if len(posted) >= shape.grades:
                break
            student = f"{100000 + section_index * shape.students_per_section + seat}"
            begin = TERM.start.isoformat()
            _insert(state, "studentSectionAssociations", {
                "beginDate": begin, "sectionReference": {**offering, "sectionIdentifier": section_id},
                "studentReference": {"studentUniqueId": student}}, f"ssa-{student}-{section_index}")
            letter = rng.choice(LETTERS)
            posted.append(PostedGrade(
                source_id=f"{student}:{section_id}:S1", student_id=student, student_name=f"Student {student}",
                section_id=section_id, course_number=course, course_name=f"Mathematics {course[4:]}",
                school_id=str(SCHOOL_ID), school_year=SCHOOL_YEAR, grading_task="S1 Final", term=TERM,
                score=round(rng.uniform(50, 100), 1), letter=letter, posted_at=None,
            ))
    return state, posted


def powerschool_from_posted(grades: list[PostedGrade], client_id: str = "sandbox-plugin",
                            client_secret: str = "sandbox-plugin-secret") -> dict[str, Any]:
    """The same posted grades as PowerSchool holds them: StoredGrades rows with their
    students, sections, term and school (store code "S1" for the semester final)."""
    from passback.emulators.powerschool import empty_state as empty_powerschool

    state = empty_powerschool()
    state["clients"][client_id] = client_secret
    state["schools"]["1"] = {"id": 1, "name": "Sandbox High School", "school_number": 100,
                             "state_province_id": str(SCHOOL_ID)}
    state["terms"]["3601"] = {"id": 3601, "yearid": SCHOOL_YEAR - 1991, "name": TERM.name, "abbreviation": "S1",
                              "firstday": TERM.start.isoformat(), "lastday": TERM.end.isoformat(), "school_id": 1}
    students: dict[str, int] = {}
    sections: dict[str, int] = {}
    next_id = iter(range(60_001, 10**8))
    for grade in grades:
        if grade.student_id not in students:
            dcid = students[grade.student_id] = next(next_id)
            first, _, last = grade.student_name.partition(" ")
            state["students"][str(dcid)] = {"id": dcid, "local_id": int(grade.student_id), "school_id": 1,
                                            "state_province_id": grade.student_id,
                                            "name": {"first_name": first, "last_name": last}}
        if grade.section_id not in sections:
            dcid = sections[grade.section_id] = next(next_id)
            course, _, number = grade.section_id.partition("-")
            state["sections"][str(dcid)] = {"id": dcid, "school_id": 1, "course_id": 0, "staff_id": 0,
                                            "term_id": 3601, "section_number": number,
                                            "expression": "1(A)", "students": []}
        dcid = next(next_id)
        state["storedgrades"][str(dcid)] = {
            "dcid": dcid, "studentid": students[grade.student_id], "sectionid": sections[grade.section_id],
            "termid": 3601, "storecode": "S1", "grade": grade.letter or "", "percent": grade.score,
            "earnedcrhrs": grade.credits_earned, "course_number": grade.course_number,
            "course_name": grade.course_name, "schoolid": 1, "datestored": "2026-12-19"}
    state["next_id"] = next(next_id)
    return state
