"""Canvas synced into a OneRoster gradebook (v1p1 and v1p2) through the run service, with saved connections.

What the OneRoster emulator must hold is computed here from the raw Canvas data and seed
000's transfer tables, with none of passback's code, and compared with the emulator's raw
state (its lineItems and results), read as OneRoster defines the fields:

| Canvas      | OneRoster result                                                          |
|-------------|---------------------------------------------------------------------------|
| Points      | ``score`` = the points, ``scoreStatus`` "fully graded"                    |
| Percentage  | ``score`` = the percentage of the points possible                         |
| Complete    | ``score`` = the points possible (full credit)                             |
| Incomplete  | ``score`` 0; the incomplete status is not passed (v1p2 ``incomplete`` "false") |
| Late        | v1p2 ``late`` "true"; v1p1 has no late flag: "fully graded", nothing more  |
| Missing     | no result; one written before is deleted                                  |
| Resubmitted | not sent until regraded (seed error 8); the new grade overwrites next sync |
| Excused     | ``scoreStatus`` "exempt" (v1p1 with the score 0 its binding requires)     |
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from passback.emulators import canvas as canvas_emulator
from passback.emulators import oneroster as oneroster_emulator
from passback.emulators.faults import FaultConfig
from passback.pipeline.plan import Scope
from passback.sandbox.district import generate
from passback.sandbox.oneroster_district import CLIENT_ID, CLIENT_SECRET, oneroster_from_canvas
from passback.services.runs import Route, sync_courses
from passback.services.setup import SetupError, SetupNotFound, check_course, link_assignment, unlink_assignment
from passback.settings import Settings
from passback.store.connections import save_connection
from passback.store.db import Store
from passback.store.history import get_run_items
from passback.vault import load_key
from tests.conftest import SMALL, ServedApp
from tests.e2e.drivers import local_due

ROUTE = Route("lms", "sis")
TITLE_LIMIT = 30  # the district's limit (stricter than OneRoster's 50)
PERIODS = (("AS-S1-Q1", "2026-08-10", "2026-10-14"), ("AS-S1-Q2", "2026-10-15", "2026-12-18"))


@dataclass
class World:
    canvas: ServedApp
    oneroster: ServedApp
    version: str
    store: Store
    settings: Settings

    @property
    def raw(self) -> dict[str, Any]:
        return self.canvas.state

    @property
    def held(self) -> dict[str, Any]:
        return self.oneroster.state

    @property
    def course(self) -> int:
        return min(c["id"] for c in self.raw["courses"].values())

    def students(self) -> list[int]:
        return sorted(e["user_id"] for e in self.raw["enrollments"].values()
                      if e["course_id"] == self.course and e["type"] == "StudentEnrollment")

    def group(self, name: str) -> int:
        return next(g["id"] for g in self.raw["assignment_groups"].values()
                    if g["course_id"] == self.course and g["name"] == name)

    def sync(self, *scopes: Scope, full_read: bool = False) -> list[Any]:
        if scopes:
            return asyncio.run(sync_courses(self.store, self.settings, ROUTE, list(scopes), full_read=full_read))
        return asyncio.run(sync_courses(self.store, self.settings, ROUTE, all_courses=True, full_read=full_read))


@pytest.fixture(params=["v1p1", "v1p2"])
def world(request: pytest.FixtureRequest, env: tuple[Store, Settings]) -> Iterator[World]:
    store, settings = env
    canvas_state, _, credentials = generate(SMALL)
    state = oneroster_from_canvas(canvas_state)
    with ServedApp(canvas_emulator.create_app(canvas_state, faults=FaultConfig(seed=1))) as canvas, \
            ServedApp(oneroster_emulator.create_app(state, faults=FaultConfig(seed=2))) as oneroster:
        key = load_key(settings)
        save_connection(store, key, name="lms", kind="canvas", base_url=canvas.url,
                        credentials={"token": credentials.canvas_token})
        save_connection(store, key, name="sis", kind="oneroster", base_url=oneroster.url,
                        credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "version": request.param})
        yield World(canvas, oneroster, request.param, store, settings)


# --- Canvas as a teacher leaves it -----------------------------------------------------------------


def add_assignment(world: World, name: str, due: date, points: float, grading: str, group: str) -> int:
    raw = world.raw
    raw["next_id"] += 1
    assignment_id = raw["next_id"]
    raw["assignments"][str(assignment_id)] = {
        "id": assignment_id, "course_id": world.course, "name": name, "description": f"<p>{name}</p>",
        "due_at": local_due(due).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "unlock_at": None, "lock_at": None,
        "points_possible": points, "grading_type": grading, "assignment_group_id": world.group(group),
        "post_to_sis": True, "published": True, "only_visible_to_overrides": False, "omit_from_final_grade": False,
        "grading_standard_id": None, "position": assignment_id, "overrides": [],
    }
    return assignment_id


def submit(world: World, assignment_id: int, user_id: int, **state: Any) -> None:
    """A submission as Canvas keeps it; ``score``/``grade`` given means graded."""
    row = {"id": assignment_id * 100_000 + user_id, "user_id": user_id, "assignment_id": assignment_id,
           "score": None, "grade": None, "excused": False, "late": False, "missing": False,
           "workflow_state": "unsubmitted", "graded_at": None, "grade_matches_current_submission": True,
           "late_policy_status": None}
    if state.get("score") is not None or state.get("grade") is not None:
        row.update(workflow_state="graded", graded_at="2026-11-02T15:00:00Z")
    if state.get("late"):
        row["late_policy_status"] = "late"
    if state.get("missing"):
        row["late_policy_status"] = "missing"
    row.update(state)
    world.raw["submissions"][f"{assignment_id}:{user_id}"] = row


def every_row_of_the_tables(world: World) -> dict[str, tuple[int, int]]:
    """One assignment whose students cover every row of the two transfer tables; (assignment, student) by row."""
    students = world.students()
    table = add_assignment(world, "Transfer Table", date(2026, 10, 5), 10.0, "points", "Homework")
    check = add_assignment(world, "Lab Check", date(2026, 10, 20), 5.0, "pass_fail", "Projects")
    percent = add_assignment(world, "Quiz Percent", date(2026, 9, 21), 20.0, "percent", "Quizzes")
    rows = {"points": (table, students[0]), "late": (table, students[1]), "missing": (table, students[2]),
            "excused": (table, students[3]), "ungraded": (table, students[4]), "complete": (check, students[0]),
            "incomplete": (check, students[1]), "percentage": (percent, students[0])}
    submit(world, table, students[0], score=8.0, grade="8")
    submit(world, table, students[1], score=9.0, grade="9", late=True)
    submit(world, table, students[2], missing=True)
    submit(world, table, students[3], excused=True, workflow_state="graded", graded_at="2026-11-01T15:00:00Z")
    submit(world, table, students[4], workflow_state="submitted")
    submit(world, check, students[0], score=5.0, grade="complete")
    submit(world, check, students[1], score=0.0, grade="incomplete")
    submit(world, percent, students[0], score=17.0, grade="85%")
    return rows


# --- what the seed's tables say the SIS holds ------------------------------------------------------


def valid(assignment: dict[str, Any], raw: dict[str, Any]) -> bool:
    """Seed 000's assignment requirements, by hand (the district's 30-character title limit)."""
    course = raw["courses"][str(assignment["course_id"])]
    term = raw["terms"][str(course["enrollment_term_id"])]
    group = raw["assignment_groups"].get(str(assignment["assignment_group_id"]))
    if not (assignment["published"] and assignment["post_to_sis"]) or assignment["only_visible_to_overrides"]:
        return False
    if assignment["points_possible"] is None or len(assignment["name"]) > TITLE_LIMIT:
        return False
    if group is None or group["sis_source_id"] is None:
        return False
    due = local_date(assignment, raw)
    return term["start_at"][:10] <= due <= term["end_at"][:10]


def local_date(assignment: dict[str, Any], raw: dict[str, Any]) -> str:
    zone = ZoneInfo(raw["courses"][str(assignment["course_id"])]["time_zone"])
    return datetime.fromisoformat(assignment["due_at"].replace("Z", "+00:00")).astimezone(zone).date().isoformat()


def expected_results(raw: dict[str, Any], version: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(title, class sourcedId, student sourcedId) -> the result's scoreStatus, score and (v1p2) flags."""
    expected: dict[tuple[str, str, str], dict[str, Any]] = {}
    for assignment in raw["assignments"].values():
        if not valid(assignment, raw):
            continue
        possible = float(assignment["points_possible"])
        for sub in raw["submissions"].values():
            if sub["assignment_id"] != assignment["id"]:
                continue
            enrollment = next(e for e in raw["enrollments"].values()
                              if e["user_id"] == sub["user_id"] and e["course_id"] == assignment["course_id"])
            key = (assignment["name"], raw["sections"][str(enrollment["course_section_id"])]["sis_section_id"],
                   raw["users"][str(sub["user_id"])]["sis_user_id"])
            flags = {"late": "false", "incomplete": "false", "missing": "false"} if version == "v1p2" else {}
            if sub["excused"]:  # Excused: grade passes, marked exempt
                expected[key] = {"scoreStatus": "exempt", "score": 0.0 if version == "v1p1" else None, **flags}
                continue
            if sub["missing"] or (sub["score"] is None and sub["grade"] is None):
                continue  # Missing: does not pass. Ungraded: nothing to send.
            if sub["grade_matches_current_submission"] is False:
                continue  # Resubmitted: not sent until regraded (seed error 8)
            word = str(sub["grade"] or "").lower()
            if assignment["grading_type"] == "pass_fail":
                score = possible if word == "complete" else 0.0  # Complete: full credit; Incomplete: 0
            elif assignment["grading_type"] == "percent" and word.endswith("%"):
                score = float(word[:-1]) / 100 * possible  # Percentage: as points
            else:
                score = float(sub["score"])
            if version == "v1p2":
                flags["late"] = "true" if sub["late"] else "false"  # Late: passes as late
            expected[key] = {"scoreStatus": "fully graded", "score": round(score, 2), **flags}
    return expected


def held_results(state: dict[str, Any], version: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    items = {k: i for k, i in state["lineItems"].items() if i["status"] == "active"}
    held = {}
    for result in state["results"].values():
        item = items.get(result["lineItem"]["sourcedId"])
        if result["status"] != "active" or item is None:
            continue
        score = result.get("score")
        row = {"scoreStatus": result["scoreStatus"], "score": None if score is None else round(float(score), 2)}
        if version == "v1p2":
            row |= {flag: result[flag] for flag in ("late", "incomplete", "missing")}
        else:
            assert not {"late", "incomplete", "missing", "class"} & set(result)  # 1.1 has no such fields
        held[(item["title"], item["class"]["sourcedId"], result["student"]["sourcedId"])] = row
    return held


def expected_line_items(raw: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(title, class) -> what the lineItem holds: one per class of the course, for each valid assignment."""
    expected = {}
    for assignment in raw["assignments"].values():
        if not valid(assignment, raw):
            continue
        due = local_date(assignment, raw)
        period = next(p for p, start, end in PERIODS if start <= due <= end)
        category = raw["assignment_groups"][str(assignment["assignment_group_id"])]["sis_source_id"]
        for section in raw["sections"].values():
            if section["course_id"] == assignment["course_id"]:
                expected[(assignment["name"], section["sis_section_id"])] = {
                    "due": due, "max": float(assignment["points_possible"]), "category": str(category),
                    "period": period}
    return expected


def held_line_items(state: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["title"], i["class"]["sourcedId"]): {"due": i["dueDate"][:10], "max": float(i["resultValueMax"]),
                                                    "category": i["category"]["sourcedId"],
                                                    "period": i["gradingPeriod"]["sourcedId"]}
            for i in state["lineItems"].values() if i["status"] == "active"}


def writes(world: World, start: int = 0) -> list[Any]:
    return [w for w in world.oneroster.writes[start:] if w.path != "/oauth/token"]


def key_of(world: World, assignment_id: int, user_id: int) -> tuple[str, str, str]:
    raw = world.raw
    enrollment = next(e for e in raw["enrollments"].values() if e["user_id"] == user_id and e["course_id"] == world.course)
    return (raw["assignments"][str(assignment_id)]["name"],
            raw["sections"][str(enrollment["course_section_id"])]["sis_section_id"],
            raw["users"][str(user_id)]["sis_user_id"])


def codes(world: World, results: list[Any]) -> Counter[str]:
    return Counter(i["code"] for r in results for i in get_run_items(world.store, r.run_id, ("error", "skipped")))


# --- the tests -----------------------------------------------------------------------------------


def test_every_transfer_row_lands_as_the_seed_says(world: World) -> None:
    rows = every_row_of_the_tables(world)
    first = world.sync()
    assert all(r.status in ("succeeded", "completed_with_errors") for r in first)
    expected = expected_results(world.raw, world.version)
    held = held_results(world.held, world.version)
    assert held == expected
    assert held_line_items(world.held) == expected_line_items(world.raw)

    # Each row of the tables, named: what the SIS holds for that student.
    def at(row: str) -> dict[str, Any] | None:
        return held.get(key_of(world, *rows[row]))

    v1p2 = world.version == "v1p2"
    assert at("points") == {"scoreStatus": "fully graded", "score": 8.0} | (
        {"late": "false", "incomplete": "false", "missing": "false"} if v1p2 else {})
    assert at("percentage")["score"] == 17.0  # type: ignore[index]  # 85 % of 20
    assert at("complete")["score"] == 5.0 and at("incomplete")["score"] == 0.0  # type: ignore[index]
    assert at("late")["scoreStatus"] == "fully graded" and at("late")["score"] == 9.0  # type: ignore[index]
    assert at("late").get("late") == ("true" if v1p2 else None)  # type: ignore[union-attr]
    assert at("incomplete").get("incomplete") == ("false" if v1p2 else None)  # type: ignore[union-attr]
    assert at("excused")["scoreStatus"] == "exempt"  # type: ignore[index]
    assert at("missing") is None and at("ungraded") is None

    # Each lineItem and each result was written once: one PUT answered 201, nothing else.
    taken = writes(world)
    assert {w.method for w in taken} == {"PUT"} and all(w.status == 201 for w in taken)
    assert Counter(w.path for w in taken).most_common(1)[0][1] == 1
    assert len([w for w in taken if "/results/" in w.path]) == len(expected)
    by_run = codes(world, first)
    assert by_run["missing-not-sent"] >= 1 and by_run["name-over-destination-limit"] + by_run[
        "name-over-district-limit"] == 1 and by_run["points-possible-none"] == 1

    mark = len(world.oneroster.writes)
    second = world.sync()
    assert sum(r.counts["created"] + r.counts["updated"] + r.counts["deleted"] for r in second) == 0
    assert writes(world, mark) == []  # the second run wrote nothing at all

    # Resubmitted: not sent until regraded, then the new grade overwrites on the next sync.
    table, student = rows["points"]
    submission = world.raw["submissions"][f"{table}:{student}"]
    submission.update(workflow_state="submitted", grade_matches_current_submission=False,
                      submitted_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))  # as Canvas stamps a resubmission
    resubmitted = world.sync(Scope(course_id=str(world.course)))
    assert codes(world, resubmitted)["score-removed-after-grading"] == 1
    assert held_results(world.held, world.version)[key_of(world, table, student)]["score"] == 8.0
    submission.update(workflow_state="graded", grade_matches_current_submission=True, score=6.0, grade="6",
                      graded_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    mark = len(world.oneroster.writes)
    regraded = world.sync(Scope(course_id=str(world.course)))
    assert sum(r.counts["updated"] for r in regraded) == 1
    assert held_results(world.held, world.version)[key_of(world, table, student)]["score"] == 6.0
    assert [(w.method, w.status) for w in writes(world, mark)] == [("PUT", 200)]  # the same result, replaced

    # Missing after it was graded (a flag no cursor sees: the reconciliation's full read does): the result is deleted.
    late_table, late_student = rows["late"]
    world.raw["submissions"][f"{late_table}:{late_student}"].update(missing=True, late_policy_status="missing")
    mark = len(world.oneroster.writes)
    world.sync(Scope(course_id=str(world.course)), full_read=True)
    assert [w.method for w in writes(world, mark)] == ["DELETE"]
    assert key_of(world, late_table, late_student) not in held_results(world.held, world.version)
    gone = [r for r in world.held["results"].values() if r["student"]["sourcedId"] == key_of(world, *rows["late"])[2]
            and r["lineItem"]["sourcedId"] in {k for k, i in world.held["lineItems"].items()
                                               if i["title"] == "Transfer Table"}]
    assert [r["status"] for r in gone] == (["tobedeleted"] if world.version == "v1p2" else [])
    assert held_results(world.held, world.version) == expected_results(world.raw, world.version)


def test_readiness_against_oneroster(world: World) -> None:
    course = str(world.course)
    readiness = asyncio.run(check_course(world.store, world.settings, ROUTE, course))
    mine = [a for a in world.raw["assignments"].values() if a["course_id"] == world.course]
    ready = {a["name"] for a in mine if valid(a, world.raw)}
    assert {a["name"] for a in readiness.assignments if a["status"] == "ready"} == ready and ready
    blocked = {f["code"] for a in readiness.assignments for f in a["findings"]}
    assert {"points-possible-none", "not-in-imported-group"} <= blocked
    assert blocked & {"name-over-destination-limit", "name-over-district-limit"}
    assert [i["kind"] for i in readiness.unmatched] == ["category"]  # Extra Practice: no OneRoster category
    assert readiness.fixes and readiness.destination_assignments == {}
    world.sync(Scope(course_id=course))
    after = asyncio.run(check_course(world.store, world.settings, ROUTE, course))
    assert sorted(after.destination_assignments.values()) == sorted(ready)  # one per assignment, not per class
    linked = {a["name"]: a["linked_to"] for a in after.assignments if a["status"] == "ready"}
    assert set(linked.values()) == set(after.destination_assignments)


def test_link_and_unlink_against_oneroster(world: World) -> None:
    course = str(world.course)
    first, second = (str(a["id"]) for a in sorted(
        (a for a in world.raw["assignments"].values() if a["course_id"] == world.course and valid(a, world.raw)),
        key=lambda a: a["id"])[:2])
    world.sync(Scope(course_id=course, assignment_id=first))
    items = dict(world.held["lineItems"])
    assert len(items) == 2  # one lineItem in each class of the course
    readiness = asyncio.run(check_course(world.store, world.settings, ROUTE, course))
    dest_id = next(a["linked_to"] for a in readiness.assignments if a["assignment_id"] == first)
    assert dest_id in items

    with pytest.raises(SetupNotFound, match="The destination has no assignment 888888"):
        asyncio.run(link_assignment(world.store, world.settings, ROUTE, course, second, "888888"))
    with pytest.raises(SetupError, match=f"Destination assignment {dest_id} is already linked"):
        asyncio.run(link_assignment(world.store, world.settings, ROUTE, course, second, dest_id))
    assert asyncio.run(unlink_assignment(world.store, world.settings, ROUTE, course, first)) is True
    assert asyncio.run(unlink_assignment(world.store, world.settings, ROUTE, course, first)) is False
    linked = asyncio.run(link_assignment(world.store, world.settings, ROUTE, course, second, dest_id))
    assert linked["linked_to"] == dest_id

    world.sync(Scope(course_id=course, assignment_id=second))
    assert set(world.held["lineItems"]) == set(items)  # sent to the linked lineItems: none made
    name, old_name = world.raw["assignments"][second]["name"], world.raw["assignments"][first]["name"]
    assert {i["title"] for i in world.held["lineItems"].values()} == {name}
    classes = {s["sis_section_id"] for s in world.raw["sections"].values() if s["course_id"] == world.course}
    everything = {k: v for k, v in expected_results(world.raw, world.version).items() if k[1] in classes}
    expected = {k: v for k, v in everything.items() if k[0] == name}
    kept = {(name, *k[1:]): v for k, v in everything.items()  # unlinking keeps what the SIS holds: the first
            if k[0] == old_name and (name, *k[1:]) not in expected}  # assignment's grades no new one replaced
    assert expected and held_results(world.held, world.version) == expected | kept

    for item in list(world.held["lineItems"]):  # deleted in the SIS: the link is released, then made anew
        world.oneroster.app.state.emulator.delete_by_hand(item, soft=world.version == "v1p2")
    released = world.sync(Scope(course_id=course, assignment_id=second))
    assert codes(world, released)["destination-assignment-missing"] == 1
    world.sync(Scope(course_id=course, assignment_id=second))
    assert held_results(world.held, world.version) == expected
    creates = [json.loads(w.body)["lineItem"]["title"] for w in world.oneroster.writes
               if w.method == "PUT" and "/lineItems/" in w.path and w.status == 201]
    assert creates.count(name) == 2  # made anew in each class, once


def test_faults_never_lose_or_double_a_line_item_or_a_result(world: World) -> None:
    """500s and answers cut off after the server acted, on one request in five: every retry is the same
    PUT, so the SIS ends holding exactly the seed's results, one object each, nothing made twice."""
    world.oneroster.control("faults", {"fault_rate": 0.2, "fault_kinds": ["500", "reset"], "seed": 17})
    for _ in range(3):  # a request unlucky six times in a row is an error of the run, sent by the next one
        results = world.sync()
        if not codes(world, results)["destination-unreachable"]:
            break
    world.oneroster.control("faults", {"fault_rate": 0})
    injected = world.oneroster.faults.injected
    assert injected.get("500", 0) > 0 and injected.get("reset", 0) > 0
    assert world.oneroster.faults.lost_writes()  # some writes took effect with their answers lost
    assert held_results(world.held, world.version) == expected_results(world.raw, world.version)
    assert held_line_items(world.held) == expected_line_items(world.raw)
    made = Counter(w.path for w in world.oneroster.writes if w.method == "PUT" and w.status == 201)
    assert made and max(made.values()) == 1  # each lineItem and result created once; repeats were replaces
    per_key = Counter((r["lineItem"]["sourcedId"], r["student"]["sourcedId"]) for r in world.held["results"].values())
    assert max(per_key.values()) == 1
