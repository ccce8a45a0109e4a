"""Recalculate and sync a courseware course's scores (R7, seed 002), and read its passback mode.

Seed 002's Student Progress & Performance view has two buttons: "Sync Score" for one
student and "⟳ Recalculate & Sync Scores" for everyone, used after an instructor changes
page or activity point values. Here both are :func:`recalculate`: the course is read
again (the courseware connector computes every score from the current point values; a
quiz keeps its stored score), and a gradebook run of the course, or of the one student,
goes through :func:`passback.services.runs.run`. That run plans against what was last
sent, so only the scores that changed are written (R4); a dry run shows, per student,
the value last sent and the value a sync would send, and writes nothing.

:func:`passback_mode` and :func:`is_manual` read the course's own setting. In manual
mode seed 002 sends scores only "when either a student or an instructor initiates a
grade passback", which :func:`recalculate` always is (its runs are recorded with the
trigger ``recalculate`` and the person who asked); an automatic path (a schedule, an
event) is to ask :func:`is_manual` first and send nothing for a manual course.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from passback.connectors.registry import SOURCE, kind_of
from passback.errors import Invalid
from passback.pipeline.plan import CREATE, DELETE, UPDATE, Plan
from passback.pipeline.run import RunRequest, RunResult, RunScope
from passback.services.connections import Route, load, open_role, open_route
from passback.services.runs import run
from passback.settings import Settings
from passback.store.db import Store
from passback.store.history import get_run_items

TRIGGER = "recalculate"
WRITES = (CREATE, UPDATE, DELETE)
NOT_STARTED = ("has not started the course (no page completed, no activity attempted): no score is sent, "
               "which is not a zero")
"""A courseware student with no score is one who has not started; the catalogue's entry speaks of Canvas."""


@runtime_checkable
class ScoredCourseSource(Protocol):
    """What a source must offer to be recalculated: per-student score detail and a passback mode.

    Read as a capability (does the opened source have these?), never by asking its kind.
    """

    async def student_scores(self, course_id: str, student_id: str | None = None) -> Any: ...

    async def passback_mode(self, course_id: str) -> str: ...


def _scored(source: Any, name: str | int) -> ScoredCourseSource:
    if not isinstance(source, ScoredCourseSource):
        kind = getattr(source, "kind", "this")
        raise Invalid(f"Connection {name!r} is a {kind} connection; recalculating scores works on a courseware "
                      "source, whose course score is computed from page and activity points. "
                      "Use `passback sync` for other sources.")
    return source


async def passback_mode(store: Store, settings: Settings, source: str | int, course_id: str) -> str:
    """The course's passback mode in the courseware: ``automatic`` or ``manual``.

    A source without such a setting (an LMS) passes back automatically.
    """
    connection = load(store, settings, source)
    if SOURCE not in kind_of(connection.kind).roles:
        raise Invalid(f"Connection {connection.name!r} is a {connection.kind} connection, not a source.")
    opened = open_role(connection, SOURCE, settings)
    try:
        if not isinstance(opened, ScoredCourseSource):
            return "automatic"
        return await opened.passback_mode(course_id)
    finally:
        await opened.aclose()


async def is_manual(store: Store, settings: Settings, source: str | int, course_id: str) -> bool:
    """True when the course sends scores only when a person asks (seed 002's manual grade passback)."""
    return await passback_mode(store, settings, source, course_id) == "manual"


def _points(value: dict[str, Any] | None) -> float | None:
    return None if not value else value.get("points")


def _changes(plan: Plan | None, outcomes: dict[str, str]) -> tuple[dict[str, Any] | None, list[dict[str, Any]],
                                                                   list[dict[str, Any]]]:
    """The column's plan, each student whose sent score changes, and each left out with why."""
    if plan is None:
        return None, [], []
    column, changed, left = None, [], []
    for step in plan.steps:
        previous = (step.identity.value or {}) if step.identity is not None else {}
        column = {"assignment_id": step.assignment_id, "name": step.name, "action": step.action,
                  "points_possible": {"sent": previous.get("points_possible"),
                                      "new": step.payload.points_possible if step.payload else None},
                  "reason": step.findings[0].message if step.findings else None}
        for score in step.scores:
            if score.action in WRITES:
                old, new = _points(score.previous), _points(score.payload.as_value() if score.payload else None)
                changed.append({"student_id": score.student_id, "action": score.action, "old": old, "new": new,
                                "delta": None if new is None else round(new - (old or 0.0), 4),
                                "outcome": outcomes.get(score.key)})
            elif score.action != "unchanged":
                code = score.finding.code if score.finding else None
                reason = NOT_STARTED if code == "student-not-graded" else (
                    score.finding.message if score.finding else None)
                left.append({"student_id": score.student_id, "action": score.action, "code": code, "reason": reason})
    return column, changed, left


def _students(scores: Any) -> dict[str, dict[str, Any]]:
    """Each student's name, SIS id and score parts, as the progress view shows them."""
    shown = {}
    for row in scores.students:
        detail = row.detail
        shown[row.student.source_id] = {
            "name": row.student.name, "sis_id": row.student.sis_id, "started": detail.started,
            "pages_completed": len(detail.pages_completed), "page_points": detail.page_points_earned,
            "activities": [{"activity_id": a.activity_id, "kind": a.kind, "earned": a.earned, "possible": a.possible,
                            "rule": a.rule} for a in detail.activities if a.attempted],
            "earned": detail.earned if detail.started else None, "possible": detail.possible,
        }
    return shown


async def recalculate(store: Store, settings: Settings, route: Route, course_id: str, *,
                      student_id: str | None = None, dry_run: bool = False, actor: str) -> dict[str, Any]:
    """Recompute every student's course score (or one student's) and send only what changed.

    Returns the course's passback mode, the run (id, status, counts, failure), the column
    (its points possible last sent and now), ``changes`` (per student: the value last
    sent, the new one, the difference, and for a real run the item's outcome), ``left``
    (students not sent, with the reason) and ``students`` (each one's score parts).
    Raises ``Invalid`` for a source that is not courseware, and ``NotFound`` for a course or
    student the courseware does not have.
    """
    async with open_route(store, settings, route) as opened:
        source = _scored(opened.source, route.source)
        mode = await source.passback_mode(course_id)
        scores = await source.student_scores(course_id, student_id)
        request = RunRequest(pipeline="gradebook", source_connection_id=opened.pairing.source_connection_id,
                             destination_connection_id=opened.pairing.destination_connection_id,
                             scope=RunScope(course_id=course_id, student_id=student_id), trigger=TRIGGER,
                             actor=actor, dry_run=dry_run)
        result: RunResult = await run(store, settings, request, connectors=opened.connectors)
    outcomes = {}
    if result.run_id is not None:
        outcomes = {item["source_id"]: item["outcome"] for item in get_run_items(store, result.run_id)}
    column, changed, left = _changes(result.plan, outcomes)
    students = _students(scores)
    for row in changed + left:
        row.update({k: students.get(row["student_id"], {}).get(k) for k in ("name", "sis_id")})
    return {
        "course_id": course_id, "student_id": student_id, "dry_run": dry_run, "passback_mode": mode,
        "run_id": result.run_id, "status": result.status, "counts": result.counts, "failure": result.failure,
        "column": column, "changes": changed, "left": left,
        "unchanged": sorted(set(students) - {r["student_id"] for r in changed + left}),
        "students": students,
    }
