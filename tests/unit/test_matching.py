"""Matching sections, students and categories: the pure rules, and the planner through them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from passback.connectors.powerschool.destination import CAPABILITIES
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
)
from passback.model.values import DestinationContext
from passback.pipeline.plan import PlanInputs, Scope, build_plan
from passback.rules.matching import (
    CATEGORY,
    SECTION,
    STUDENT,
    CategoryTarget,
    Matching,
    MatchRule,
    MatchRuleError,
    category_in_every_section,
    category_in_section,
    destination_section_ids,
    key_of,
    match_categories,
    match_sections,
    match_students,
    matching_from,
)
from passback.services.matching import unmatched
from tests.unit.test_plan import TERM

PATTERN = r"^S-(\d+)-2026$"


# --- the rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "value", "key"), [
    (MatchRule(SECTION), "501", "501"),
    (MatchRule(SECTION), "  501 ", "501"),
    (MatchRule(SECTION), None, None),
    (MatchRule(SECTION), "", None),
    (MatchRule(SECTION, pattern=PATTERN), "S-501-2026", "501"),
    (MatchRule(SECTION, pattern=PATTERN), "S-501-2025", None),
    (MatchRule(SECTION, pattern=PATTERN), "501", None),
    (MatchRule(SECTION, pattern=r"\d+"), "sec 501 (P1)", "501"),  # no group: the whole match
    (MatchRule(SECTION, strip_prefix="S-"), "S-501", "501"),
    (MatchRule(SECTION, strip_prefix="S-"), "501", "501"),  # a value without the prefix is kept
    (MatchRule(SECTION, strip_suffix="-2026"), "501-2026", "501"),
    (MatchRule(STUDENT, strip_prefix="STU", strip_suffix="X"), "STU200001X", "200001"),
    (MatchRule(STUDENT, strip_prefix="STU", pattern=r"0*(\d+)"), "STU000123", "123"),  # cut, then the pattern
    (MatchRule(CATEGORY, pattern=r"(?i)^ps-(.+)$"), "PS-77", "77"),
    (MatchRule(SECTION, strip_prefix="S-"), "S-", None),  # nothing left: no key
])
def test_key_of(rule: MatchRule, value: str | None, key: str | None) -> None:
    assert key_of(rule, value) == key


def test_defaults_are_what_passback_always_did() -> None:
    assert MatchRule(SECTION).as_value() == {"kind": "section", "source_field": "sis_id", "dest_field": "id",
                                             "pattern": None, "strip_prefix": "", "strip_suffix": ""}
    assert (MatchRule(STUDENT).source_field, MatchRule(STUDENT).dest_field) == ("sis_id", "number")
    assert (MatchRule(CATEGORY).source_field, MatchRule(CATEGORY).dest_field) == ("ref", "id")
    assert MatchRule(SECTION).is_default and not MatchRule(SECTION, pattern=PATTERN).is_default
    assert Matching().rule(STUDENT) == MatchRule(STUDENT)
    assert "without the prefix 'S-'" in MatchRule(SECTION, strip_prefix="S-").described()


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"kind": "teacher"}, "Unknown kind"),
    ({"kind": SECTION, "dest_field": "name"}, "destination fields id"),
    ({"kind": STUDENT, "source_field": "name"}, "source fields sis_id, id"),
    ({"kind": SECTION, "pattern": "S-(\\d+"}, "not a regular expression"),
    ({"kind": SECTION, "pattern": r"(S)-(\d+)"}, "has 2 groups"),
])
def test_a_rule_that_cannot_work_is_refused_with_what_to_change(kwargs: dict, says: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(MatchRuleError, match=says):
        MatchRule(**kwargs)


def test_matching_from_stored_rows() -> None:
    matching = matching_from(
        [{"kind": "section", "source_field": "sis_id", "dest_field": "id", "pattern": PATTERN, "strip_prefix": "",
          "strip_suffix": ""}, {"kind": "student", "strip_prefix": "STU"}],
        [("section", "s1", "777"), ("student", "u1", "d9")])
    assert matching.rule(SECTION).pattern == PATTERN
    assert matching.rule(STUDENT) == MatchRule(STUDENT, strip_prefix="STU")
    assert matching.rule(CATEGORY) == MatchRule(CATEGORY)
    assert matching.override(SECTION, "s1") == "777" and matching.override(STUDENT, "u1") == "d9"
    assert matching.override(SECTION, "s2") is None


# --- sections, students, categories ------------------------------------------------------------------

SECTIONS = (Section(source_id="s1", name="P1", sis_id="S-501-2026"),
            Section(source_id="s2", name="P2", sis_id="S-502-2026"),
            Section(source_id="s3", name="P3", sis_id=None))


def test_sections_match_by_the_rule_and_an_override_beats_it() -> None:
    dest = {"501": object(), "502": object(), "900": object()}
    assert match_sections(SECTIONS, dest) == {}  # ids differ: nothing matches by default
    assert destination_section_ids(SECTIONS) == ["S-501-2026", "S-502-2026"]
    rule = Matching(rules={SECTION: MatchRule(SECTION, pattern=PATTERN)})
    assert destination_section_ids(SECTIONS, rule) == ["501", "502"]
    assert match_sections(SECTIONS, dest, rule) == {"s1": "501", "s2": "502"}
    hand = Matching(rules=rule.rules, overrides={SECTION: {"s2": "900", "s3": "900"}})
    assert destination_section_ids(SECTIONS, hand) == ["501", "900"]  # each once
    assert match_sections(SECTIONS, dest, hand) == {"s1": "501", "s2": "900", "s3": "900"}
    by_id = Matching(rules={SECTION: MatchRule(SECTION, source_field="id", strip_prefix="s")})
    assert match_sections(SECTIONS, {"1": object()}, by_id) == {"s1": "1"}


def test_students_match_by_number_or_id() -> None:
    students = (Student(source_id="u1", name="A", sis_id="STU200001"), Student(source_id="u2", name="B", sis_id="d2"),
                Student(source_id="u3", name="C", sis_id=None))
    numbers = {"200001": "d1", "200002": "d2"}
    assert match_students(students, numbers) == {}
    prefix = Matching(rules={STUDENT: MatchRule(STUDENT, strip_prefix="STU")})
    assert match_students(students, numbers, prefix) == {"u1": "d1"}
    by_id = Matching(rules={STUDENT: MatchRule(STUDENT, dest_field="id")})
    assert match_students(students, numbers, by_id) == {"u2": "d2"}
    hand = Matching(rules=prefix.rules, overrides={STUDENT: {"u1": "d7", "u3": "d2"}})
    assert match_students(students, numbers, hand) == {"u1": "d7", "u3": "d2"}  # taken as given


def test_categories_a_mapping_beats_the_rule_and_names_resolve_per_section() -> None:
    categories = (Category(source_id="g1", name="Homework", destination_ref="77"),
                  Category(source_id="g2", name="Quizzes"), Category(source_id="g3", name="Extra"))
    assert match_categories(categories, {}) == {"g1": CategoryTarget("77", "id", "import")}
    assert match_categories(categories, {"g1": "78", "g3": "79"}) == {
        "g1": CategoryTarget("78", "id", "mapping"), "g3": CategoryTarget("79", "id", "mapping")}
    by_name = Matching(rules={CATEGORY: MatchRule(CATEGORY, source_field="name", dest_field="name")})
    targets = match_categories(categories, {"g3": "79"}, by_name)
    assert targets["g2"] == CategoryTarget("Quizzes", "name", "rule") and targets["g3"].via == "mapping"
    per_section = {
        "501": [DestinationCategory(dest_id="11", section_id="501", name="quizzes ", active=False),
                DestinationCategory(dest_id="12", section_id="501", name="Quizzes")],
        "502": [DestinationCategory(dest_id="21", section_id="502", name="Quizzes")],
    }
    assert category_in_section(targets["g2"], per_section["501"]) == "12"  # the active one first
    assert category_in_section(targets["g2"], per_section["502"]) == "21"
    assert category_in_section(targets["g1"], per_section["502"]) is None
    assert category_in_every_section(targets["g2"], per_section)
    assert not category_in_every_section(CategoryTarget("12"), per_section)
    assert not category_in_every_section(None, per_section)


# --- the planner through the matching ----------------------------------------------------------------


def course(section_sis: tuple[str, str] = ("S-501-2026", "S-502-2026"),
           student_sis: tuple[str, ...] = ("200001", "200002", "200003")) -> CourseSnapshot:
    return CourseSnapshot(
        course=Course(source_id="10", name="Biology", term=TERM, time_zone="America/Chicago"),
        sections=(Section(source_id="s1", name="P1", sis_id=section_sis[0]),
                  Section(source_id="s2", name="P2", sis_id=section_sis[1])),
        students=tuple(Student(source_id=f"u{i}", name=f"Student {i}", sis_id=sis)
                       for i, sis in enumerate(student_sis, start=1)),
        enrollments=(Enrollment(student_id="u1", section_id="s1"), Enrollment(student_id="u2", section_id="s1"),
                     Enrollment(student_id="u3", section_id="s2")),
        categories=(Category(source_id="g1", name="Homework", imported=True, destination_ref="77"),
                    Category(source_id="g2", name="Extra Practice")),
        assignments=(Assignment(source_id="1", name="Homework 1", points_possible=10.0, category_id="g1",
                                due_at=datetime(2026, 9, 2, 4, 59, tzinfo=UTC)),),
        scores=tuple(Score(assignment_id="1", student_id=f"u{i}", score=float(i), graded=True) for i in (1, 2, 3)),
    )


DEST = DestinationContext(
    sections={"501": DestinationSection(dest_id="501", name="P1", student_ids=("d1", "d2")),
              "502": DestinationSection(dest_id="502", name="P2", student_ids=("d3",))},
    categories={"501": [DestinationCategory(dest_id="77", section_id="501", name="Homework")],
                "502": [DestinationCategory(dest_id="77", section_id="502", name="Homework")]},
    student_ids={"200001": "d1", "200002": "d2", "200003": "d3"},
)


def plan(snapshot: CourseSnapshot, matching: Matching | None = None,
         dest: DestinationContext = DEST):  # type: ignore[no-untyped-def]
    extra = {"matching": matching} if matching is not None else {}
    return build_plan(PlanInputs(snapshot=snapshot, destination=dest, identities={}, capabilities=CAPABILITIES,
                                 district_title_limit=30, scope=Scope(course_id="10"), **extra))


def written(result) -> dict[str, tuple[str | None, str | None]]:  # type: ignore[no-untyped-def]
    return {s.student_id: (s.dest_section_id, s.dest_student_id)
            for s in result.steps[0].scores if s.action == "create"}


def test_equal_ids_plan_as_before_without_any_matching() -> None:
    same = plan(course(("501", "502")))
    assert same.steps[0].action == "create" and same.steps[0].payload.section_ids == ("501", "502")
    assert written(same) == {"u1": ("501", "d1"), "u2": ("501", "d2"), "u3": ("502", "d3")}
    assert same == plan(course(("501", "502")), Matching())


def test_prefixed_section_ids_fail_until_a_rule_or_an_override_matches_them() -> None:
    before = plan(course())
    assert before.steps[0].action == "error"
    assert before.steps[0].findings[0].code == "section-not-in-destination"

    rule = Matching(rules={SECTION: MatchRule(SECTION, pattern=PATTERN)})
    after = plan(course(), rule)
    assert after.steps[0].payload.section_ids == ("501", "502")
    assert written(after) == {"u1": ("501", "d1"), "u2": ("501", "d2"), "u3": ("502", "d3")}

    hand = Matching(overrides={SECTION: {"s1": "501"}})  # only P1 matched by hand: P2's student waits
    partly = plan(course(), hand)
    assert partly.steps[0].payload.section_ids == ("501",)
    assert written(partly) == {"u1": ("501", "d1"), "u2": ("501", "d2")}
    assert {s.student_id: s.action for s in partly.steps[0].scores}["u3"] == "error"

    beats = Matching(rules=rule.rules, overrides={SECTION: {"s2": "501"}})  # the override beats the rule
    assert plan(course(), beats).steps[0].payload.section_ids == ("501",)


def test_prefixed_student_ids_fail_until_matched() -> None:
    snapshot = course(("501", "502"), ("STU200001", "STU200002", "odd-3"))
    before = plan(snapshot)
    assert {s.finding.code for s in before.steps[0].scores if s.finding} == {"student-not-in-destination-section"}
    rule = Matching(rules={STUDENT: MatchRule(STUDENT, strip_prefix="STU")})
    assert written(plan(snapshot, rule)) == {"u1": ("501", "d1"), "u2": ("501", "d2")}
    hand = Matching(rules=rule.rules, overrides={STUDENT: {"u3": "d3"}})
    assert written(plan(snapshot, hand)) == {"u1": ("501", "d1"), "u2": ("501", "d2"), "u3": ("502", "d3")}
    wrong = Matching(rules=rule.rules, overrides={STUDENT: {"u3": "d1"}})  # d1 is not on P2's roster
    assert {s.student_id: s.action for s in plan(snapshot, wrong).steps[0].scores}["u3"] == "error"


def test_categories_matched_by_name_take_each_sections_own_category() -> None:
    dest = DestinationContext(
        sections=DEST.sections,
        categories={"501": [DestinationCategory(dest_id="71", section_id="501", name="Homework")],
                    "502": [DestinationCategory(dest_id="72", section_id="502", name="homework")]},
        student_ids=DEST.student_ids)
    snapshot = course(("501", "502"))
    assert plan(snapshot, dest=dest).steps[0].findings[0].code == "category-not-valid-for-section"
    by_name = Matching(rules={CATEGORY: MatchRule(CATEGORY, source_field="name", dest_field="name")})
    step = plan(snapshot, by_name, dest).steps[0]
    assert step.action == "create" and step.payload.category_ids == {"501": "71", "502": "72"}


def test_unmatched_lists_each_section_student_and_category_with_its_fix() -> None:
    snapshot = course(("S-501-2026", "502"), ("STU200001", "200002", "200003"))
    items = unmatched("10", snapshot, DEST, CAPABILITIES, {}, Matching())
    found = {(i["kind"], i["source_id"]): i for i in items}
    assert set(found) == {("section", "s1"), ("category", "g2")}
    assert found[("section", "s1")]["fix"] == "passback match section --course 10 --source-section s1 --to DEST_SECTION_ID"
    assert found[("section", "s1")]["problem"] == "the destination has no section 'S-501-2026'"
    assert found[("category", "g2")]["fix"].startswith("passback categories map --course 10 --category g2 --to ")
    # u1 is in P1, which matched nothing: the section's fix comes first. With P1 matched, u1 shows.
    rule = Matching(rules={SECTION: MatchRule(SECTION, pattern=r"(\d+)")})
    items = unmatched("10", snapshot, DEST, CAPABILITIES, {}, rule)
    student = next(i for i in items if i["kind"] == "student")
    assert (student["source_id"], student["looked_for"]) == ("u1", "STU200001")
    assert student["fix"] == "passback match student --source-student u1 --to DEST_STUDENT_ID"
    assert "match rule student" in student["hint"]
    hand = Matching(rules=rule.rules, overrides={STUDENT: {"u1": "d1"}})
    assert [i["kind"] for i in unmatched("10", snapshot, DEST, CAPABILITIES, {"g2": "77"}, hand)] == []
