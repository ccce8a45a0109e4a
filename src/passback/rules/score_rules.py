"""Checks of one student's score on an assignment that is itself valid."""

from __future__ import annotations

from passback.model import Score
from passback.rules.findings import Finding


def check_score(
    score: Score,
    *,
    section_id: str | None,
    dest_student_id: str | None,
    dest_assignment_section_id: str | None,
    previously_written: bool,
) -> Finding | None:
    context = {
        "student_id": score.student_id,
        "assignment_id": score.assignment_id,
        "section_id": section_id,
        "dest_student_id": dest_student_id,
        "dest_assignment_section_id": dest_assignment_section_id,
    }
    if score.unreadable:
        return Finding("source-grade-unreadable", context | {"reason": score.unreadable})
    if score.excused:
        return None if dest_student_id and dest_assignment_section_id else _not_in_section(context)
    if score.missing:
        return Finding("missing-not-sent", context)
    if score.resubmitted:
        return Finding("score-removed-after-grading", context)
    if not score.graded and not previously_written:
        return Finding("student-not-graded", context)
    if dest_student_id is None or dest_assignment_section_id is None:
        return _not_in_section(context)
    return None


def _not_in_section(context: dict[str, object]) -> Finding:
    return Finding("student-not-in-destination-section", context)
