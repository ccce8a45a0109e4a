"""The planner: deterministic, incremental, and explicit about every item."""

from __future__ import annotations

from datetime import UTC, date, datetime

from passback.connectors.powerschool.destination import CAPABILITIES
from passback.model.values import DestinationContext, ScorePayload
from passback.model import (
    Assignment,
    Category,
    Course,
    CourseSnapshot,
    DestinationCategory,
    DestinationSection,
    Enrollment,
    Score,
    Section,
    Student,
    Term,
)
from passback.pipeline.plan import ASSIGNMENT, SCORE, PlanInputs, Scope, build_plan, value_hash
from passback.store.identity import PENDING, IdentityRow

TERM = Term(source_id="t", name="S1", start=date(2026, 8, 10), end=date(2026, 12, 18))


def snapshot(scores: tuple[Score, ...] | None = None, assignments: tuple[Assignment, ...] | None = None) -> CourseSnapshot:
    return CourseSnapshot(
        course=Course(source_id="10", name="Biology", term=TERM, time_zone="America/Chicago"),
        sections=(Section(source_id="s1", name="P1", sis_id="501"), Section(source_id="s2", name="P2", sis_id="999")),
        students=(Student(source_id="u1", name="A", sis_id="n1"), Student(source_id="u2", name="B", sis_id="n2"),
                  Student(source_id="u3", name="C", sis_id="n3")),
        enrollments=(Enrollment(student_id="u1", section_id="s1"), Enrollment(student_id="u2", section_id="s1"),
                     Enrollment(student_id="u3", section_id="s2")),
        categories=(Category(source_id="g1", name="Homework", imported=True, destination_ref="77"),),
        assignments=assignments or (
            Assignment(source_id="1", name="Homework 1", points_possible=10.0, category_id="g1",
                       due_at=datetime(2026, 9, 2, 4, 59, tzinfo=UTC), description="<p>Read &amp; answer</p>"),
        ),
        scores=scores if scores is not None else (
            Score(assignment_id="1", student_id="u1", score=9.0, graded=True),
            Score(assignment_id="1", student_id="u2", score=7.0, graded=True, late=True),
            Score(assignment_id="1", student_id="u3", score=8.0, graded=True),
        ),
    )


DEST = DestinationContext(
    sections={"501": DestinationSection(dest_id="501", name="P1", student_ids=("d1", "d2"))},
    categories={"501": [DestinationCategory(dest_id="77", section_id="501", name="Homework")]},
    student_ids={"n1": "d1", "n2": "d2", "n3": "d3"},
)


def plan_for(snap: CourseSnapshot, identities: dict | None = None, scope: Scope | None = None):  # type: ignore[no-untyped-def]
    return build_plan(PlanInputs(snapshot=snap, destination=DEST, identities=identities or {},
                                 capabilities=CAPABILITIES, district_title_limit=30,
                                 scope=scope or Scope(course_id="10")))


def identities_after(plan) -> dict:  # type: ignore[no-untyped-def]
    """What the identity map holds once the plan was written."""
    rows = {}
    for step in plan.steps:
        if step.payload:
            rows[(ASSIGNMENT, step.key)] = IdentityRow(ASSIGNMENT, step.key, "900", step.value_hash,
                                                       step.payload.as_value() | {"section_assignment_ids": {"501": "901"}})
        for score in step.scores:
            if score.payload is not None and score.action in ("create", "update"):
                rows[(SCORE, score.key)] = IdentityRow(SCORE, score.key, "x", None, score.payload.as_value())
    return rows


def test_first_plan_creates_everything_valid_and_explains_the_rest() -> None:
    plan = plan_for(snapshot())
    step = plan.steps[0]
    assert step.action == "create"
    assert step.payload is not None
    assert step.payload.due_date == date(2026, 9, 1)  # 23:59 in Chicago, not the next day in UTC
    assert step.payload.description == "Read & answer"
    actions = {s.student_id: s.action for s in step.scores}
    assert actions == {"u1": "create", "u2": "create", "u3": "error"}
    assert [s.finding.code for s in step.scores if s.finding] == ["student-not-in-destination-section"]
    late = next(s for s in step.scores if s.student_id == "u2")
    assert late.payload == ScorePayload(points=7.0, late=True)


def test_same_inputs_same_plan() -> None:
    assert plan_for(snapshot()) == plan_for(snapshot())


def test_nothing_changed_means_nothing_to_write() -> None:
    first = plan_for(snapshot())
    second = plan_for(snapshot(), identities_after(first))
    assert second.writes() == 0
    assert second.steps[0].action == "unchanged"


def test_one_changed_score_is_one_update() -> None:
    first = plan_for(snapshot())
    changed = snapshot(scores=(
        Score(assignment_id="1", student_id="u1", score=10.0, graded=True),
        Score(assignment_id="1", student_id="u2", score=7.0, graded=True, late=True),
        Score(assignment_id="1", student_id="u3", score=8.0, graded=True),
    ))
    second = plan_for(changed, identities_after(first))
    assert second.writes() == 1
    assert [s.student_id for s in second.steps[0].scores if s.action == "update"] == ["u1"]


def test_removed_grade_deletes_and_renamed_assignment_updates() -> None:
    first = plan_for(snapshot())
    renamed = (Assignment(source_id="1", name="Homework 1b", points_possible=10.0, category_id="g1",
                          due_at=datetime(2026, 9, 2, 4, 59, tzinfo=UTC), description="<p>Read &amp; answer</p>"),)
    scores = (Score(assignment_id="1", student_id="u1", graded=False),
              Score(assignment_id="1", student_id="u2", score=7.0, graded=True, late=True))
    second = plan_for(snapshot(scores=scores, assignments=renamed), identities_after(first))
    assert second.steps[0].action == "update"
    assert {s.student_id: s.action for s in second.steps[0].scores} == {"u1": "delete", "u2": "unchanged"}


def test_assignment_gone_from_source_is_deleted_only_in_a_whole_course_run() -> None:
    first = plan_for(snapshot())
    gone = snapshot(assignments=(Assignment(source_id="2", name="Quiz", points_possible=5.0, category_id="g1",
                                            due_at=datetime(2026, 9, 5, tzinfo=UTC)),), scores=())
    whole = plan_for(gone, identities_after(first))
    assert [(s.assignment_id, s.action) for s in whole.steps] == [("2", "create"), ("1", "delete")]
    only_two = plan_for(gone, identities_after(first), Scope(course_id="10", assignment_id="2"))
    assert [(s.assignment_id, s.action) for s in only_two.steps] == [("2", "create")]


def test_pending_create_is_planned_as_create_again() -> None:
    first = plan_for(snapshot())
    key = first.steps[0].key
    pending = {(ASSIGNMENT, key): IdentityRow(ASSIGNMENT, key, None, None, None, PENDING)}
    assert plan_for(snapshot(), pending).steps[0].action == "create"


def test_student_scope_plans_only_that_student() -> None:
    plan = plan_for(snapshot(), scope=Scope(course_id="10", student_id="u2"))
    assert [s.student_id for s in plan.steps[0].scores] == ["u2"]


def test_value_hash_ignores_key_order() -> None:
    assert value_hash({"a": 1, "b": 2}) == value_hash({"b": 2, "a": 1})


def test_resubmitted_then_regraded_overwrites_on_the_next_sync() -> None:
    """Seed 000: "Resubmitted | New grade will overwrite old grade on next sync"."""
    first = plan_for(snapshot())
    waiting = snapshot(scores=(Score(assignment_id="1", student_id="u1", score=9.0, graded=True, resubmitted=True),))
    blocked = plan_for(waiting, identities_after(first)).steps[0].scores[0]
    assert blocked.action == "error" and blocked.finding.code == "score-removed-after-grading"
    regraded = snapshot(scores=(Score(assignment_id="1", student_id="u1", score=10.0, graded=True),))
    step = plan_for(regraded, identities_after(first)).steps[0].scores[0]
    assert step.action == "update" and step.payload == ScorePayload(points=10.0)


def test_placement_decides_where_sections_land() -> None:
    """A destination with one gradebook per course takes every section; one with sections
    takes only the sections whose SIS id it knows (section s2, SIS id 999, is unknown)."""
    from dataclasses import replace

    from passback.model.values import CategoryScope, Placement

    per_course = replace(CAPABILITIES, placement=Placement.PER_COURSE, categories=CategoryScope.NONE)
    course_book = DestinationContext(
        sections={"course-10": DestinationSection(dest_id="course-10", name="Biology", student_ids=("d1", "d2", "d3"))},
        categories={},
        student_ids={"n1": "d1", "n2": "d2", "n3": "d3"},
    )
    whole = build_plan(PlanInputs(snapshot=snapshot(), destination=course_book, identities={},
                                  capabilities=per_course, district_title_limit=30, scope=Scope(course_id="10")))
    step = whole.steps[0]
    assert step.action == "create" and step.payload is not None
    assert step.payload.section_ids == ("course-10",)
    assert {s.student_id: (s.action, s.dest_section_id) for s in step.scores} == {
        "u1": ("create", "course-10"), "u2": ("create", "course-10"), "u3": ("create", "course-10")}

    spanning = plan_for(snapshot()).steps[0]
    assert spanning.payload is not None and spanning.payload.section_ids == ("501",)
    assert {s.student_id: s.action for s in spanning.scores}["u3"] == "error"


def test_a_scope_naming_what_the_course_lacks_is_an_error_naming_it() -> None:
    import pytest

    from passback.pipeline.plan import ScopeNotFound

    with pytest.raises(ScopeNotFound, match="Course 10 has no assignment 999"):
        plan_for(snapshot(), scope=Scope(course_id="10", assignment_id="999"))
    with pytest.raises(ScopeNotFound, match="Course 10 has no student u9"):
        plan_for(snapshot(), scope=Scope(course_id="10", student_id="u9"))
    assert plan_for(snapshot(), scope=Scope(course_id="10", student_id="u1")).steps  # a real one plans
