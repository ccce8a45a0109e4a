"""Seed 000's assignment requirements as pure rules."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from passback.model import AssignedTo, Assignment, Category, Term
from passback.model.values import Capabilities, CategoryScope, IdAssignment, Placement
from passback.rules.assignment_rules import AssignmentRuleContext, check_assignment
from passback.rules.catalogue import CATALOGUE, by_seed_error

# The limits are the seed's, written here, not read from the connector under test:
SEED_TITLE_LIMIT = 30  # "Title is no more than 30 characters long."
SEED_DESTINATION_NAME_LIMIT = 50  # error 9: "Value may not contain more than 50 character(s)."
POWERTEACHER_PRO = Capabilities(  # PowerTeacher Pro as seed 000 describes it
    placement=Placement.SPANS_SECTIONS, categories=CategoryScope.PER_SECTION, ids=IdAssignment.SERVER_ASSIGNED,
    score_fields=frozenset({"points", "late", "exempt"}), name_max_length=SEED_DESTINATION_NAME_LIMIT,
    requires_points_possible=True,  # error 5: "Score entry points is required"
)
TERM = Term(source_id="t", name="S1", start=date(2026, 8, 10), end=date(2026, 12, 18))
CTX = AssignmentRuleContext(
    term=TERM,
    categories={"g1": Category(source_id="g1", name="Homework", imported=True, destination_ref="77"),
                "g2": Category(source_id="g2", name="Practice")},
    mapped_category_ids=frozenset({"g1"}),
    capabilities=POWERTEACHER_PRO,
    district_title_limit=SEED_TITLE_LIMIT,
)
GOOD = Assignment(source_id="1", name="Homework 1", points_possible=10.0, category_id="g1",
                  due_at=datetime(2026, 9, 1, 5, tzinfo=UTC))


def codes(**changes: object) -> list[str]:
    return [f.code for f in check_assignment(GOOD.model_copy(update=changes), CTX)]


def test_valid_assignment_has_no_findings() -> None:
    assert codes() == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": "x" * 51}, "name-over-destination-limit"),
        ({"name": "x" * 31}, "name-over-district-limit"),
        ({"points_possible": None}, "points-possible-none"),
        ({"due_at": None}, "due-date-missing"),
        ({"due_at": datetime(2027, 1, 5, tzinfo=UTC)}, "due-date-outside-term"),
        ({"category_id": "g2"}, "not-in-imported-group"),
        ({"category_id": None}, "grading-category-missing"),
        ({"assigned_to": AssignedTo.INDIVIDUALS}, "assigned-to-individuals"),
        ({"mastery_paths": True}, "mastery-paths"),
    ],
)
def test_each_requirement(changes: dict, expected: str) -> None:
    assert expected in codes(**changes)


@pytest.mark.parametrize(("length", "expected"), [
    (SEED_TITLE_LIMIT, []),  # "no more than 30": 30 is fine
    (SEED_TITLE_LIMIT + 1, ["name-over-district-limit"]),
    (SEED_DESTINATION_NAME_LIMIT, ["name-over-district-limit"]),  # PowerTeacher Pro takes it; the district does not
    (SEED_DESTINATION_NAME_LIMIT + 1, ["name-over-destination-limit"]),
])
def test_name_limits_at_their_edges(length: int, expected: list[str]) -> None:
    found = codes(name="x" * length)
    assert [c for c in found if c.startswith("name-")][:1] == expected


@pytest.mark.parametrize(("due", "inside"), [
    (datetime(2026, 8, 10, 12, tzinfo=UTC), True),  # the term's first day
    (datetime(2026, 12, 18, 12, tzinfo=UTC), True),  # its last day
    (datetime(2026, 8, 9, 12, tzinfo=UTC), False),
    (datetime(2026, 12, 19, 12, tzinfo=UTC), False),
])
def test_due_date_within_the_term_includes_both_ends(due: datetime, inside: bool) -> None:
    assert ("due-date-outside-term" not in codes(due_at=due)) is inside


def test_zero_points_possible_is_the_fix_for_none() -> None:
    """Seed error 5's fix: "be out of 0 points instead of 'none'"."""
    assert codes(points_possible=0.0) == []
    assert codes(points_possible=None) == ["points-possible-none"]


def test_sync_switch_off_is_a_skip_and_hides_other_findings() -> None:
    findings = check_assignment(GOOD.model_copy(update={"sync": False, "name": "x" * 60}), CTX)
    assert [f.code for f in findings] == ["sync-off"]
    assert findings[0].outcome == "skipped"


def test_district_limit_message_is_canvas_wording() -> None:
    finding = check_assignment(GOOD.model_copy(update={"name": "x" * 31}), CTX)[0]
    assert finding.message == "Name is too long, must be under 31 characters"


def test_seed_errors_keep_their_numbers_and_words() -> None:
    assert {e.seed_error for e in CATALOGUE.values() if e.seed_error} == set(range(1, 10))
    assert by_seed_error(5).message == "Score entry points is required"
    assert "Value may not contain more than 50 character(s)." in by_seed_error(9).message
    assert by_seed_error(7).message == (
        "TeacherCategoryID is not active or does not belong to lead teacher for Section")
    for item in CATALOGUE.values():
        assert item.meaning and item.fix, item.code
