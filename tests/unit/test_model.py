"""The canonical model and the generated district."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from passback.model import Course, CourseSnapshot, Enrollment, Score
from passback.sandbox.district import DistrictShape, generate


def test_snapshot_groups_enrollments_by_student_and_is_immutable() -> None:
    snapshot = CourseSnapshot(
        course=Course(source_id="1", name="Biology"), sections=(), students=(), categories=(), assignments=(),
        enrollments=(Enrollment(student_id="a", section_id="s1"), Enrollment(student_id="a", section_id="s2"),
                     Enrollment(student_id="b", section_id="s1")),
        scores=(Score(assignment_id="x", student_id="a", score=1.0, graded=True),),
    )
    assert snapshot.student_sections() == {"a": ("s1", "s2"), "b": ("s1",)}
    with pytest.raises(ValidationError):
        snapshot.scores[0].score = 2.0  # type: ignore[misc]


def test_a_fixed_seed_gives_the_same_district() -> None:
    shape = DistrictShape(courses=2, sections=2, students=4, assignments=5, seed=3)
    first, second = generate(shape), generate(shape)
    assert json.dumps(first[:2], sort_keys=True) == json.dumps(second[:2], sort_keys=True)
    assert first[2] == second[2]
    other = generate(DistrictShape(courses=2, sections=2, students=4, assignments=5, seed=4))
    assert json.dumps(other[0]["submissions"], sort_keys=True) != json.dumps(first[0]["submissions"], sort_keys=True)
    canvas, powerschool, _ = first
    assert len(canvas["courses"]) == 2 and len(powerschool["sections"]) == 4
    assert sum(e["type"] == "StudentEnrollment" for e in canvas["enrollments"].values()) == 2 * 2 * 4
