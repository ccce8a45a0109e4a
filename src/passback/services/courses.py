"""A course as the Grade Sync pages and the REST API show it: its route, runs, items, students.

A course is named by its source connection and its id in the source; the district's
routes say which destination it syncs to. The explanation of each item (meaning, fix,
deep link) is the one ``passback runs show`` prints (services/history).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from passback.errors import NotFound
from passback.pipeline.plan import Plan
from passback.pipeline.run import RunRequest, RunScope
from passback.rules.catalogue import CATALOGUE, entry
from passback.services import runs
from passback.services.accounts import STAFF_ROLES
from passback.services.connections import Route, open_route
from passback.services.district import get_district
from passback.services.history import explain_item
from passback.services.leases import lease_key
from passback.services.live import LiveRuns
from passback.services.schedules import get_schedule
from passback.settings import Settings
from passback.store.connections import ConnectionRef, connection_refs
from passback.store.course_names import course_names_of, remember_course_name
from passback.store.db import Store
from passback.store.history import get_run, get_run_items, list_course_runs
from passback.store.identity import Pairing
from passback.store.leases import holder_of

ITEM_OUTCOMES = ("created", "updated", "unchanged", "deleted", "skipped", "error")
ERRORS_AND_SKIPS = ("error", "skipped")  # what the Grade Sync page shows of a run unless asked for more


class NoRoute(NotFound):
    """A source connection with no destination set: an admin sets it in the district settings."""


@dataclass(frozen=True)
class CourseRef:
    """One course on one route: where its grades come from and go to."""

    source: ConnectionRef
    destination: ConnectionRef
    course_id: str

    @property
    def route(self) -> Route:
        return Route(self.source.id, self.destination.id)

    @property
    def pairing(self) -> Pairing:
        return Pairing(self.source.id, self.destination.id)

    def request(self, *, actor: str, trigger: str = "manual", assignment_id: str | None = None,
                student_id: str | None = None, dry_run: bool = False) -> RunRequest:
        return RunRequest(pipeline="gradebook", source_connection_id=self.source.id,
                          destination_connection_id=self.destination.id,
                          scope=RunScope(course_id=self.course_id, assignment_id=assignment_id, student_id=student_id),
                          trigger=trigger, actor=actor, dry_run=dry_run)


def _connection(store: Store, name_or_id: str | int) -> ConnectionRef:
    found = next((c for c in connection_refs(store) if name_or_id in (c.name, c.id)), None)
    if found is None:
        raise NotFound(f"No connection {name_or_id!r}; an admin adds it on the connections page.")
    return found


def destination_of(store: Store, settings: Settings, source: str | int) -> ConnectionRef:
    """The destination the district routes this source's courses to."""
    connection = _connection(store, source)
    destination = get_district(store, settings).destination_of(connection.name)
    if destination is not None:
        return _connection(store, destination)
    raise NoRoute(f"Courses of {connection.name} have no destination yet. An admin sets one under "
                  "District settings, Routes (source connection and the destination its grades go to).")


def course_ref(store: Store, settings: Settings, source: str | int, course_id: str) -> CourseRef:
    return CourseRef(_connection(store, source), destination_of(store, settings, source), str(course_id))


def routed_sources(store: Store, settings: Settings) -> list[tuple[ConnectionRef, ConnectionRef]]:
    """Every (source, destination) pair the district routes, with both connections."""
    by_name = {c.name: c for c in connection_refs(store)}
    return [(by_name[r.source], by_name[r.destination]) for r in get_district(store, settings).routes
            if r.source in by_name and r.destination in by_name]


async def source_courses(store: Store, settings: Settings, source: ConnectionRef, destination: ConnectionRef) -> list[str]:
    """The course ids the source lists (what an admin may open)."""
    async with open_route(store, settings, Route(source.id, destination.id)) as opened:
        return [str(c) for c in await opened.source.list_course_ids()]


def course_name(store: Store, ref: CourseRef) -> str:
    """The course's title as last seen (a launch, a preview), else its id."""
    return course_names_of(store, ref.source.id).get(ref.course_id) or f"Course {ref.course_id}"


def remember_name(store: Store, source_connection_id: int, course_id: str, name: str | None) -> None:
    if name:
        remember_course_name(store, source_connection_id, course_id, name)


async def visible_courses(store: Store, settings: Settings, user: dict[str, Any],
                          granted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The courses this person may open: an admin every course of every routed source, others those granted."""
    listed: list[dict[str, Any]] = []
    for source, destination in routed_sources(store, settings):
        names = course_names_of(store, source.id)
        if user.get("is_admin"):
            ids = await source_courses(store, settings, source, destination)
        else:
            ids = [str(g["course_id"]) for g in granted if g["source_connection_id"] == source.id
                   and g.get("role") in STAFF_ROLES]
        for course_id in ids:
            latest = list_course_runs(store, Pairing(source.id, destination.id), course_id, limit=1)
            listed.append({"source": source.name, "destination": destination.name, "course_id": course_id,
                           "name": names.get(course_id) or f"Course {course_id}",
                           "last_run": _run_row(latest[0]) if latest else None})
    return listed


# --- the Grade Sync page (U1) --------------------------------------------------------------


def _key_parts(source_id: str) -> tuple[str | None, str | None]:
    """(assignment id, student id) of a run item's key ``course:assignment[:student]``."""
    parts = source_id.split(":")
    return (parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None)


def in_progress(store: Store, live: LiveRuns, ref: CourseRef, *, finished_too: bool = False) -> dict[str, Any] | None:
    """The run holding this course now: this process's, with its progress, else any process's lease.

    ``finished_too``: this process's latest run of the course even when it has ended (its outcome).
    """
    request = ref.request(actor="-")
    mine = live.get(request)
    if mine is not None and (mine.running or finished_too):
        return mine.as_dict()
    holder = holder_of(store, lease_key(request))
    if holder is None:
        return None
    return {"label": "A sync", "actor": holder.actor, "running": True, "done": None, "total": None,
            "run_id": holder.run_id, "status": "running", "since": holder.since.isoformat()}


def course_runs(store: Store, ref: CourseRef, limit: int = 20) -> list[dict[str, Any]]:
    return [_run_row(r) for r in list_course_runs(store, ref.pairing, ref.course_id, limit)]


def _run_row(run: dict[str, Any]) -> dict[str, Any]:
    return {key: run.get(key) for key in ("id", "trigger", "actor", "status", "started_at", "finished_at",
                                          "counts", "failure", "scope")}


def run_items(store: Store, ref: CourseRef, run_id: str, *, outcome: str | None = None,
              assignment_id: str | None = None, student_id: str | None = None) -> dict[str, Any]:
    """One run of this course, its items explained and filtered (errors first).

    ``outcome``: one outcome, ``"all"``, or nothing for the errors and skips (what needs a person).
    """
    run = get_run(store, run_id)
    if run is None or run.get("course_id") != ref.course_id or run["source_connection_id"] != ref.source.id \
            or run["destination_connection_id"] != ref.destination.id:
        raise NotFound(f"Course {ref.course_id} has no run {run_id}.")
    wanted = ERRORS_AND_SKIPS if not outcome else None if outcome == "all" else (outcome,)
    every = get_run_items(store, run["id"], None if wanted is None else (*wanted, "created", "updated", "deleted"))
    names = {(item.get("context") or {}).get("assignment_id"): (item.get("context") or {}).get("assignment_name")
             for item in every if item["object_kind"] == "assignment"}
    items = []
    for item in every:
        if wanted is not None and item["outcome"] not in wanted:
            continue
        item_assignment, item_student = _key_parts(item["source_id"])
        if assignment_id and item_assignment != assignment_id:
            continue
        if student_id and item_student != student_id:
            continue
        shown = explain_item(item)
        shown.update(assignment_id=item_assignment, student_id=item_student,
                     assignment_name=(item.get("context") or {}).get("assignment_name") or names.get(item_assignment))
        items.append(shown)
    items.sort(key=lambda i: (i["outcome"] != "error", i["outcome"] != "skipped", i["id"]))
    return {"run": _run_row(run), "items": items}


def next_scheduled(store: Store, ref: CourseRef) -> dict[str, Any] | None:
    return get_schedule(store, source_connection_id=ref.source.id, destination_connection_id=ref.destination.id,
                        course_id=ref.course_id)


# --- preview and the student view (U2) -----------------------------------------------------


def _value_text(value: dict[str, Any] | None) -> str | None:
    if not value:
        return None
    shown = value.get("points")
    if shown is None:
        shown = value.get("score", value.get("grade"))
    flags = [k for k in ("late", "missing", "exempt", "incomplete") if value.get(k)]
    if value.get("status"):
        flags.append(str(value["status"]))
    text = "" if shown is None else f"{shown:g}" if isinstance(shown, (int, float)) else str(shown)
    return " ".join([text, *flags]).strip() or "blank"


async def _plan_with_roster(store: Store, settings: Settings, ref: CourseRef,
                            student_id: str | None = None) -> tuple[Plan, Any]:
    """The dry run's plan, and the course as read (names of students and assignments)."""
    plans: list[Plan] = []
    async with open_route(store, settings, ref.route) as opened:
        snapshot = await opened.source.read_course(ref.course_id)
        request = ref.request(actor="preview", student_id=student_id, dry_run=True)
        result = await runs.preview(store, settings, request, connectors=opened.connectors, on_plan=plans.append)
    remember_course_name(store, ref.source.id, ref.course_id, snapshot.course.name)
    plan = result.plan or (plans[0] if plans else Plan(ref.course_id, None))
    return plan, snapshot


def _finding(finding: Any) -> dict[str, Any] | None:
    if finding is None:
        return None
    known = CATALOGUE.get(finding.code)
    return {"code": finding.code, "message": finding.message,
            "fix": entry(finding.code).render_fix(**finding.context) if known else None}


async def preview(store: Store, settings: Settings, ref: CourseRef) -> dict[str, Any]:
    """What a sync would do now: per assignment, and per student, created, updated, deleted; nothing is sent."""
    plan, snapshot = await _plan_with_roster(store, settings, ref)
    names = {s.source_id: s.name for s in snapshot.students}
    assignments, students = [], {}
    for step in plan.steps:
        counts = {"create": 0, "update": 0, "delete": 0, "unchanged": 0, "skip": 0, "error": 0}
        for score in step.scores:
            counts[score.action] = counts.get(score.action, 0) + 1
            row = students.setdefault(score.student_id, {"student_id": score.student_id,
                                                         "name": names.get(score.student_id, score.student_id),
                                                         "create": 0, "update": 0, "delete": 0, "error": 0})
            if score.action in row:
                row[score.action] += 1
        assignments.append({"assignment_id": step.assignment_id, "name": step.name, "action": step.action,
                            "scores": counts, "findings": [_finding(f) for f in step.findings]})
    changed = [s for s in students.values() if s["create"] or s["update"] or s["delete"] or s["error"]]
    return {"course_id": ref.course_id, "course": snapshot.course.name, "assignments": assignments,
            "students": sorted(changed, key=lambda s: s["name"]),
            "totals": {k: sum(a["scores"].get(k, 0) for a in assignments) for k in ("create", "update", "delete")},
            "assignment_actions": {k: sum(1 for a in assignments if a["action"] == k)
                                   for k in ("create", "update", "delete", "unchanged", "skip", "error")}}


def _last_errors(store: Store, ref: CourseRef) -> dict[tuple[str, str], dict[str, Any]]:
    """Each (assignment, student)'s error or skip in the course's latest run, explained."""
    latest = list_course_runs(store, ref.pairing, ref.course_id, limit=1)
    if not latest:
        return {}
    found = {}
    for item in get_run_items(store, latest[0]["id"], ("error", "skipped")):
        assignment_id, student_id = _key_parts(item["source_id"])
        if assignment_id and student_id:
            found[(assignment_id, student_id)] = explain_item(item)
    return found


STATE_OF = {"create": "not yet sent", "update": "changed since sent", "delete": "to be removed",
            "unchanged": "in sync", "skip": "not synced", "error": "error"}


async def student_view(store: Store, settings: Settings, ref: CourseRef,
                       student_id: str | None = None) -> dict[str, Any]:
    """Per student: each assignment's source score, the value the destination holds, its sync state and last error."""
    plan, snapshot = await _plan_with_roster(store, settings, ref, student_id)
    errors = _last_errors(store, ref)
    students = {s.source_id: {"student_id": s.source_id, "name": s.name, "assignments": [], "pending": 0,
                              "errors": 0} for s in snapshot.students if student_id in (None, s.source_id)}
    for step in plan.steps:
        for score in step.scores:
            row = students.get(score.student_id)
            if row is None:
                continue
            last = errors.get((step.assignment_id, score.student_id))
            finding = _finding(score.finding)
            row["assignments"].append({
                "assignment_id": step.assignment_id, "name": step.name,
                "source": _value_text(score.payload.as_value() if score.payload else None),
                "destination": _value_text(score.previous), "state": STATE_OF.get(score.action, score.action),
                "action": score.action, "problem": finding,
                "last_error": {k: last.get(k) for k in ("code", "message", "meaning", "fix", "link")} if last else None})
            row["pending"] += score.action in ("create", "update", "delete")
            row["errors"] += score.action == "error" or last is not None
    return {"course_id": ref.course_id, "course": snapshot.course.name,
            "students": sorted(students.values(), key=lambda s: s["name"])}
