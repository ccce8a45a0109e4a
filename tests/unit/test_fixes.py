"""Safe fixes (B4) proposed for blocking findings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from passback.model.values import AssignmentChanges
from passback.model import Assignment, Category
from passback.rules.findings import Finding
from passback.rules.fixes import propose_fixes, shorten_name

CATEGORIES = {"g1": Category(source_id="g1", name="Homework", destination_ref="7"),
              "g2": Category(source_id="g2", name="Tests", destination_ref="8"),
              "g3": Category(source_id="g3", name="homework ")}


def test_shorten_name_cuts_at_a_word_and_stays_unique() -> None:
    assert shorten_name("Unit 3 Lab Report: Measuring the Speed of Sound", 30, []) == "Unit 3 Lab Report: Measuring"
    assert shorten_name("Unit 3 Lab Report: Measuring the Speed", 30, ["Unit 3 Lab Report: Measuring"]) == \
        "Unit 3 Lab Report: Measuring 2"


@given(name=st.text(min_size=1, max_size=80), limit=st.integers(min_value=5, max_value=50),
       taken=st.lists(st.text(max_size=50), max_size=5))
def test_shortened_names_fit_and_are_new(name: str, limit: int, taken: list[str]) -> None:
    short = shorten_name(name, limit, taken)
    assert len(short) <= limit
    assert short.casefold() not in {t.casefold() for t in taken}


def fixes_for(assignment: Assignment, *codes: str, mapped: frozenset[str] = frozenset({"g1", "g2"})):  # type: ignore[no-untyped-def]
    return propose_fixes([(assignment, [Finding(c) for c in codes])], limit=30, categories=CATEGORIES,
                         mapped_category_ids=mapped)


def test_each_fixable_finding_gets_its_one_action() -> None:
    long = Assignment(source_id="1", name="A very long assignment name that goes on", category_id="g1")
    assert fixes_for(long, "name-over-destination-limit")[0].changes == AssignmentChanges(
        name="A very long assignment name")
    assert fixes_for(Assignment(source_id="2", name="Log"), "points-possible-none")[0].changes == \
        AssignmentChanges(points_possible=0.0)
    moved = fixes_for(Assignment(source_id="3", name="HW", category_id="g3"), "not-in-imported-group")
    assert moved[0].changes == AssignmentChanges(category_id="g1")  # same name, case and spaces aside
    for code in ("assigned-to-individuals", "mastery-paths"):
        assert fixes_for(Assignment(source_id="4", name="MP"), code)[0].changes == AssignmentChanges(sync=False)


def test_no_single_right_category_means_switch_off_and_a_due_date_is_never_guessed() -> None:
    unsure = fixes_for(Assignment(source_id="5", name="Bonus", category_id="zz"), "not-in-imported-group")
    assert unsure[0].changes == AssignmentChanges(sync=False)
    assert fixes_for(Assignment(source_id="6", name="Essay"), "due-date-missing") == []


def test_messages_speak_the_words_of_the_source_the_teacher_grades_in() -> None:
    from passback.rules.catalogue import entry

    canvas = entry("not-in-imported-group").render(assignment_name="Lab 1")
    schoology = entry("not-in-imported-group").render(assignment_name="Lab 1", source_kind="schoology")
    assert "assignment group in Canvas" in canvas and "Post to SIS" in canvas  # seed 000's words, kept
    assert "Canvas" not in schoology and "assignment group" not in schoology and "Post to SIS" not in schoology
    assert "grading category" in schoology and "Schoology" in schoology
    fix = entry("sync-off").render_fix(source_kind="schoology")
    assert "Sync to SIS" not in fix and "sync switch" in fix
    assert "Canvas" not in entry("score-removed-after-grading").render(section_id="1", source_kind="schoology")
