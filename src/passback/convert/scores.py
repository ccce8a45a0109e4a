"""Seed 000's two transfer tables, "Transfer of Assignment Grades" and "... Statuses".

| Canvas     | PowerTeacher Pro                      |
|------------|---------------------------------------|
| Points     | Points                                |
| Percentage | Points                                |
| Incomplete | 0, Incomplete status not passed       |
| Complete   | 100 (full credit)                     |
| Late       | Passes as Late                        |
| Missing    | Does not pass, displays as blank      |
| Resubmitted| New grade will overwrite old grade on next sync |
| Excused    | Grade passes; marked Exempt           |

``None`` from :func:`convert_score` means "nothing to send": the student has no
grade the destination should hold (missing, or not graded).
"""

from __future__ import annotations

import math

from passback.model.values import ScorePayload
from passback.model import Assignment, GradingSchemeEntry, GradingType, Score

COMPLETE_WORDS = frozenset({"complete", "pass", "credit"})
INCOMPLETE_WORDS = frozenset({"incomplete", "fail", "no credit"})


def letter_to_fraction(grade: str, scheme: tuple[GradingSchemeEntry, ...]) -> float | None:
    """The fraction of full credit a letter stands for: the bottom of its band."""
    wanted = grade.strip().lower()
    for entry in scheme:
        if entry.name.strip().lower() == wanted:
            return entry.min_fraction
    return None


def _round(points: float) -> float:
    return round(points, 4)


def earned_points(
    score: Score, assignment: Assignment, scheme: tuple[GradingSchemeEntry, ...] = ()
) -> float | None:
    """Points earned, whatever the grading type the teacher graded with."""
    possible = assignment.points_possible or 0.0
    grading = assignment.grading_type
    if grading is GradingType.PASS_FAIL or grading is GradingType.COMPLETE_INCOMPLETE:
        word = (score.grade or "").strip().lower()
        if word in COMPLETE_WORDS:
            return _round(possible)
        if word in INCOMPLETE_WORDS:
            return 0.0
    if score.score is not None:
        return _round(score.score) if math.isfinite(score.score) else None
    if grading is GradingType.PERCENT and score.grade and score.grade.strip().endswith("%"):
        try:
            share = float(score.grade.strip().rstrip("%")) / 100.0 * possible
        except ValueError:  # "abc%": no percentage, nothing to send
            return None
        return _round(share) if math.isfinite(share) else None
    if grading is GradingType.LETTER and score.grade:
        fraction = letter_to_fraction(score.grade, scheme)
        if fraction is not None:
            return _round(fraction * possible)
    return None


def convert_score(
    score: Score, assignment: Assignment, scheme: tuple[GradingSchemeEntry, ...] = ()
) -> ScorePayload | None:
    if score.excused:
        return ScorePayload(points=None, exempt=True)
    if score.missing or not score.graded:
        return None
    points = earned_points(score, assignment, scheme)
    if points is None:
        return None
    return ScorePayload(points=points, late=score.late)
