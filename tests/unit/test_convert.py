"""Seed 000's transfer tables, row by row, and properties of the conversion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from passback.model.values import ScorePayload
from passback.convert.scores import convert_score
from passback.model import Assignment, GradingSchemeEntry, GradingType, Score

SCHEME = (GradingSchemeEntry(name="A", min_fraction=0.9), GradingSchemeEntry(name="B", min_fraction=0.8),
          GradingSchemeEntry(name="F", min_fraction=0.0))


def assignment(grading: GradingType = GradingType.POINTS, points: float = 20.0) -> Assignment:
    return Assignment(source_id="1", name="Quiz 1", points_possible=points, grading_type=grading)


def score(**values: object) -> Score:
    return Score(assignment_id="1", student_id="9", **values)  # type: ignore[arg-type]


# Seed 000, "Transfer of Assignment Grades" and "Transfer of Assignment Statuses", row by row.
@pytest.mark.parametrize(
    ("row", "grading", "submission", "expected"),
    [
        ("Points | Points", GradingType.POINTS, {"score": 17.5, "grade": "17.5", "graded": True},
         ScorePayload(points=17.5)),
        ("Percentage | Points", GradingType.PERCENT, {"score": 15.0, "grade": "75%", "graded": True},
         ScorePayload(points=15.0)),
        ("Percentage | Points (a grade given only as a percentage)", GradingType.PERCENT,
         {"grade": "75%", "graded": True}, ScorePayload(points=15.0)),
        ("Incomplete | 0, Incomplete status not passed", GradingType.PASS_FAIL,
         {"score": 0.0, "grade": "incomplete", "graded": True}, ScorePayload(points=0.0)),
        ("Complete | 100", GradingType.PASS_FAIL, {"score": 20.0, "grade": "complete", "graded": True},
         ScorePayload(points=20.0)),
        ("Late | Passes as Late", GradingType.POINTS, {"score": 12.0, "graded": True, "late": True},
         ScorePayload(points=12.0, late=True)),
        ("Missing | Does not pass, displays as blank", GradingType.POINTS, {"missing": True}, None),
        ("Missing | Does not pass, displays as blank (even with a missing-policy zero)", GradingType.POINTS,
         {"missing": True, "score": 0.0, "graded": True}, None),
        ("Excused | Grade Passes, Mark Exempt in PowerTeacher Pro", GradingType.POINTS,
         {"excused": True, "graded": True}, ScorePayload(points=None, exempt=True)),
        ("Letter grade through the course grading scheme", GradingType.LETTER, {"grade": "B", "graded": True},
         ScorePayload(points=16.0)),
        ("Not graded: nothing to send", GradingType.POINTS, {}, None),
    ],
)
def test_transfer_tables(row: str, grading: GradingType, submission: dict, expected: ScorePayload | None) -> None:
    assert convert_score(score(**submission), assignment(grading), SCHEME) == expected, row


def test_complete_is_100_on_a_100_point_assignment() -> None:
    done = score(score=100.0, grade="complete", graded=True)
    assert convert_score(done, assignment(GradingType.PASS_FAIL, points=100.0)) == ScorePayload(points=100.0)


@given(
    points=st.floats(min_value=0, max_value=1000, allow_nan=False),
    earned=st.one_of(st.none(), st.floats(min_value=0, max_value=1000, allow_nan=False)),
    missing=st.booleans(), excused=st.booleans(), late=st.booleans(), graded=st.booleans(),
)
def test_properties(points: float, earned: float | None, missing: bool, excused: bool, late: bool,
                    graded: bool) -> None:
    source = score(score=earned, graded=graded, missing=missing, excused=excused, late=late)
    first = convert_score(source, assignment(points=points))
    assert first == convert_score(source, assignment(points=points))  # deterministic
    if missing and not excused:
        assert first is None  # a missing submission never sends a score, least of all a zero
    if first is not None and first.points is not None:
        assert first.points == round(earned or 0.0, 4)
        assert not first.exempt


@given(points=st.floats(min_value=0, max_value=500, allow_nan=False),
       earned=st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1, max_size=20))
def test_converted_points_never_exceed_points_possible_plus_extra_credit(points: float, earned: list[float]) -> None:
    """Seed 000: a sync sends "Points possible" and "Extra credit points", and points pass as
    points ("Transfer of Assignment Grades": Points | Points). So every score sent is the
    points earned, and the assignment must allow what the best student earned above points
    possible: the bound is worked out here from the scores, not asked of the code."""
    from passback.pipeline.plan import extra_credit

    target = assignment(points=points)
    scores = [Score(assignment_id="1", student_id=str(i), score=e, graded=True) for i, e in enumerate(earned)]
    allowance = round(max(0.0, round(max(earned), 4) - points), 4)  # points above points possible, by hand
    for source in scores:
        sent = convert_score(source, target)
        assert sent is not None and sent.points is not None
        assert sent.points == round(source.score or 0.0, 4)  # Points | Points: unchanged
        assert sent.points <= round(points + allowance, 4) + 1e-9
    assert extra_credit(target, scores, ()) == allowance  # what the destination is told to allow


@pytest.mark.parametrize(("possible", "earned", "allowance"), [
    (20.0, [18.0, 20.0], 0.0),  # nobody above points possible: no extra credit
    (20.0, [21.5, 19.0], 1.5),  # the best score above points possible sets it
    (0.0, [3.0], 3.0),  # a 0-point assignment (seed error 5's fix): everything is extra credit
    (10.0, [], 0.0),  # nothing graded
])
def test_extra_credit_is_the_best_score_above_points_possible(possible: float, earned: list[float],
                                                              allowance: float) -> None:
    from passback.pipeline.plan import extra_credit

    scores = [Score(assignment_id="1", student_id=str(i), score=e, graded=True) for i, e in enumerate(earned)]
    assert extra_credit(assignment(points=possible), scores, ()) == allowance
