"""A courseware course score (S4, R7): points for completed pages plus activity scores.

Seed 002 (CourseArc) is the reading this follows. A courseware course reports one score
per student to the gradebook, and that score is made of two things an instructor can
re-value at any time: points for each completed page, and points for activities
(quizzes, polls, assignments ...) on those pages. The seed says three things about it:

* "Recalculate & Sync Scores" is for when "adjustments have been made to activity point
  values or page point values": so a score is always computed from the **current** page
  and activity point values, never stored. In the seed's example the instructor gives
  five points to every page after students started; "the students' progress doesn't
  change" but "all the students' scores increased": each completed page earns its
  current points.
* "Activities such as quizzes are not regraded by the recalculate and sync scores
  process": a quiz is scored when it is attempted, and that stored score stands. When a
  quiz's point value changes later, its attempts keep the score they were given (not
  rescaled, not capped); only the course's points possible moves.
* Everything else an activity earns follows the current point values: an activity's
  attempt keeps the *fraction* it earned (``score / points_possible_at_attempt``) and
  that fraction of the activity's current points is earned. An attempt made while the
  activity was worth nothing (a participation poll, say) has no fraction to keep: the
  submitted response earns the activity's full current points, which is how a "change
  from participation to cumulative grading" reaches students who already answered.
  An attempt nobody has scored yet (``score`` None) earns nothing until it is scored.

Points possible for the course is the sum of every page's points and every activity's
points possible, at their current values: one column for every student. The latest
attempt at an activity is the one that counts (an instructor who resets an activity
gives the student a new attempt). A student with no completed page and no attempt has
not started: no score at all (nothing is sent, as with any ungraded work), which is not
the same as a score of zero.

Pure: no I/O, the same inputs give the same numbers. Sums are rounded to 4 places so a
recalculation that changes nothing never differs by a float's last digit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

NOT_REGRADED_KINDS = frozenset({"quiz"})
"""Activity kinds scored once, when attempted: their stored score stands (seed 002's "not regraded")."""

PLACES = 4


@dataclass(frozen=True)
class Page:
    """A course page and the points completing it earns now (possibly 0)."""

    id: str
    points: float
    title: str = ""


@dataclass(frozen=True)
class Activity:
    """An activity on a page and what it is worth now."""

    id: str
    page_id: str
    kind: str
    points_possible: float
    title: str = ""


@dataclass(frozen=True)
class Attempt:
    """One attempt at an activity, as graded when it was made.

    ``points_possible_at_attempt`` is what the activity was worth then; ``score`` is None
    while nobody has scored the attempt.
    """

    activity_id: str
    number: int
    score: float | None
    points_possible_at_attempt: float
    submitted_at: str | None = None


@dataclass(frozen=True)
class Progress:
    """What one student has done in the course: pages completed and attempts made."""

    student_id: str
    pages_completed: frozenset[str] = frozenset()
    attempts: tuple[Attempt, ...] = ()

    @property
    def started(self) -> bool:
        return bool(self.pages_completed or self.attempts)

    def latest_attempts(self) -> dict[str, Attempt]:
        """The attempt that counts for each activity: the latest one."""
        latest: dict[str, Attempt] = {}
        for attempt in self.attempts:
            held = latest.get(attempt.activity_id)
            if held is None or attempt.number > held.number:
                latest[attempt.activity_id] = attempt
        return latest

    def last_activity(self) -> str | None:
        """When the student last submitted anything, as the source gave it (ISO text)."""
        times = [a.submitted_at for a in self.attempts if a.submitted_at]
        return max(times) if times else None


@dataclass(frozen=True)
class ActivityScore:
    """What one activity gives one student now, and how that was decided."""

    activity_id: str
    kind: str
    title: str
    earned: float | None  # None: not attempted, or attempted and not yet scored
    possible: float
    attempted: bool
    rule: str  # "stored" (quiz, not regraded), "rescaled", "participation", "unscored", "not attempted"


@dataclass(frozen=True)
class ScoreDetail:
    """One student's course score with its parts: what the Student Progress & Performance view shows."""

    student_id: str
    started: bool
    pages_completed: tuple[str, ...]
    page_points_earned: float
    page_points_possible: float
    activities: tuple[ActivityScore, ...] = field(default_factory=tuple)
    earned: float = 0.0
    possible: float = 0.0


def _sum(values: Iterable[float]) -> float:
    return round(math.fsum(values), PLACES)


def activity_earned(activity: Activity, attempt: Attempt | None) -> tuple[float | None, str]:
    """The points an activity's counting attempt earns now, and which rule said so."""
    if attempt is None:
        return None, "not attempted"
    if attempt.score is None:
        return None, "unscored"
    if activity.kind in NOT_REGRADED_KINDS:
        return round(attempt.score, PLACES), "stored"
    if attempt.points_possible_at_attempt > 0:
        fraction = attempt.score / attempt.points_possible_at_attempt
        return round(fraction * activity.points_possible, PLACES), "rescaled"
    return round(activity.points_possible, PLACES), "participation"


def points_possible(pages: Sequence[Page], activities: Sequence[Activity]) -> float:
    """The course's points possible: every page's points and every activity's, as they are now."""
    return _sum([p.points for p in pages] + [a.points_possible for a in activities])


def score_detail(pages: Sequence[Page], activities: Sequence[Activity], progress: Progress) -> ScoreDetail:
    """One student's score, part by part (see the module docstring for the rules)."""
    known_pages = {p.id: p for p in pages}
    completed = tuple(sorted(pid for pid in progress.pages_completed if pid in known_pages))
    page_earned = _sum(known_pages[pid].points for pid in completed)
    latest = progress.latest_attempts()
    parts = []
    for activity in activities:
        attempt = latest.get(activity.id)
        earned, rule = activity_earned(activity, attempt)
        parts.append(ActivityScore(activity.id, activity.kind, activity.title, earned, activity.points_possible,
                                   attempt is not None, rule))
    earned = _sum([page_earned] + [p.earned for p in parts if p.earned is not None])
    return ScoreDetail(
        student_id=progress.student_id, started=progress.started, pages_completed=completed,
        page_points_earned=page_earned, page_points_possible=_sum(p.points for p in pages),
        activities=tuple(parts), earned=earned, possible=points_possible(pages, activities),
    )


def course_score(pages: Sequence[Page], activities: Sequence[Activity], progress: Progress) -> tuple[float, float]:
    """(earned, possible) for one student: completed pages' points plus activity scores, out of everything."""
    detail = score_detail(pages, activities, progress)
    return detail.earned, detail.possible
