"""The courseware course score (seed 002), table-driven: pages completed earn their current points,
a quiz's stored attempt score stands (not regraded), other activities earn per the current point values."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from passback.convert.courseware import Activity, Attempt, Page, Progress, course_score, score_detail

P1, P2, P3 = Page("p1", 0.0), Page("p2", 0.0), Page("p3", 0.0)
FIVE = tuple(Page(p.id, 5.0) for p in (P1, P2, P3))  # the seed's example: five points per page, set later
QUIZ = Activity("q", "p1", "quiz", 10.0)
QUIZ_NOW_20 = Activity("q", "p1", "quiz", 20.0)  # the instructor doubled the quiz after it was taken
QUIZ_NOW_4 = Activity("q", "p1", "quiz", 4.0)
POLL_0 = Activity("poll", "p2", "poll", 0.0)
POLL_2 = Activity("poll", "p2", "poll", 2.0)
ESSAY = Activity("a", "p3", "assignment", 20.0)
ESSAY_40 = Activity("a", "p3", "assignment", 40.0)


def quiz_try(score: float | None, at: float = 10.0, number: int = 1) -> Attempt:
    return Attempt("q", number, score, at)


@dataclass(frozen=True)
class Case:
    name: str
    pages: tuple[Page, ...]
    activities: tuple[Activity, ...]
    progress: Progress
    earned: float
    possible: float


CASES = [
    Case("nothing done, nothing worth anything", (P1, P2, P3), (), Progress("s"), 0.0, 0.0),
    Case("pages at 0 earn nothing", (P1, P2, P3), (), Progress("s", frozenset({"p1", "p2"})), 0.0, 0.0),
    Case("seed 002: 5 points per page after students started: completed pages earn them",
         FIVE, (), Progress("s", frozenset({"p1", "p2"})), 10.0, 15.0),
    Case("a page completed that the course no longer has earns nothing",
         FIVE, (), Progress("s", frozenset({"p1", "gone"})), 5.0, 15.0),
    Case("quiz as graded", FIVE, (QUIZ,), Progress("s", frozenset({"p1"}), (quiz_try(7.0),)), 12.0, 25.0),
    Case("quiz points raised later: not regraded, possible moves",
         FIVE, (QUIZ_NOW_20,), Progress("s", frozenset({"p1"}), (quiz_try(7.0),)), 12.0, 35.0),
    Case("quiz points lowered below the stored score: the stored score still stands",
         (P1,), (QUIZ_NOW_4,), Progress("s", frozenset(), (quiz_try(7.0),)), 7.0, 4.0),
    Case("the latest quiz attempt counts, even when lower",
         (P1,), (QUIZ,), Progress("s", frozenset(), (quiz_try(9.0, number=1), quiz_try(6.0, number=2))), 6.0, 10.0),
    Case("attempts in any order: the highest number is the latest",
         (P1,), (QUIZ,), Progress("s", frozenset(), (quiz_try(6.0, number=2), quiz_try(9.0, number=1))), 6.0, 10.0),
    Case("an unscored attempt earns nothing yet",
         (P1,), (ESSAY,), Progress("s", frozenset(), (Attempt("a", 1, None, 20.0),)), 0.0, 20.0),
    Case("a non-quiz activity keeps its fraction at the current points",
         (P1,), (ESSAY_40,), Progress("s", frozenset(), (Attempt("a", 1, 15.0, 20.0),)), 30.0, 40.0),
    Case("a poll answered while worth 0 earns its full current points (participation)",
         (P1,), (POLL_2,), Progress("s", frozenset(), (Attempt("poll", 1, 0.0, 0.0),)), 2.0, 2.0),
    Case("a poll still worth 0 earns 0", (P1,), (POLL_0,),
         Progress("s", frozenset(), (Attempt("poll", 1, 0.0, 0.0),)), 0.0, 0.0),
    Case("an attempt at an activity the course no longer has is ignored",
         (P1,), (), Progress("s", frozenset(), (Attempt("gone", 1, 5.0, 5.0),)), 0.0, 0.0),
    Case("everything together",
         FIVE, (QUIZ_NOW_20, POLL_2, ESSAY_40),
         Progress("s", frozenset({"p1", "p2", "p3"}),
                  (quiz_try(8.0), Attempt("poll", 1, 0.0, 0.0), Attempt("a", 1, 10.0, 20.0))),
         15.0 + 8.0 + 2.0 + 20.0, 15.0 + 20.0 + 2.0 + 40.0),
    Case("thirds round to 4 places", (Page("p1", 1.0),), (Activity("a", "p1", "assignment", 1.0),),
         Progress("s", frozenset(), (Attempt("a", 1, 1.0, 3.0),)), 0.3333, 2.0),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_course_score(case: Case) -> None:
    assert course_score(case.pages, case.activities, case.progress) == (case.earned, case.possible)


def test_seed_002_example_adds_five_per_completed_page_and_leaves_progress_alone() -> None:
    progress = Progress("s", frozenset({"p1", "p3"}), (quiz_try(7.0),))
    before = score_detail((P1, P2, P3), (QUIZ,), progress)
    after = score_detail(FIVE, (QUIZ,), progress)
    assert after.pages_completed == before.pages_completed == ("p1", "p3")  # progress does not change
    assert after.earned - before.earned == 5.0 * len(progress.pages_completed)
    assert after.possible - before.possible == 15.0


def test_detail_names_the_rule_for_each_activity() -> None:
    progress = Progress("s", frozenset(), (quiz_try(7.0), Attempt("poll", 1, 0.0, 0.0), Attempt("a", 1, None, 20.0)))
    detail = score_detail((P1,), (QUIZ_NOW_20, POLL_2, ESSAY, Activity("x", "p1", "poll", 1.0)), progress)
    assert {a.activity_id: a.rule for a in detail.activities} == {
        "q": "stored", "poll": "participation", "a": "unscored", "x": "not attempted"}
    assert detail.started and not score_detail((P1,), (), Progress("s")).started


@given(st.lists(st.tuples(st.floats(0, 50, allow_nan=False), st.booleans()), max_size=8),
       st.floats(0, 20, allow_nan=False), st.floats(0.5, 20, allow_nan=False))
def test_raising_page_points_never_lowers_a_score(pages: list[tuple[float, bool]], bonus: float,
                                                  quiz_points: float) -> None:
    """The seed's recalculation only adds completed-page points; a quiz (not regraded) never moves."""
    before = tuple(Page(f"p{i}", points) for i, (points, _) in enumerate(pages))
    after = tuple(Page(p.id, p.points + bonus) for p in before)
    done = frozenset(f"p{i}" for i, (_, completed) in enumerate(pages) if completed)
    progress = Progress("s", done, (quiz_try(quiz_points / 2, at=quiz_points),))
    quiz = Activity("q", "p0", "quiz", quiz_points * 3)
    (earned_before, _), (earned_after, possible_after) = (course_score(before, (quiz,), progress),
                                                          course_score(after, (quiz,), progress))
    assert earned_after == pytest.approx(earned_before + bonus * len(done), abs=1e-3)
    assert possible_after >= earned_after - 1e-6  # the stored quiz score is under the quiz's points here
