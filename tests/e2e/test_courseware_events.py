"""Courseware change events end to end: students' work in the emulated courseware reaches PowerTeacher Pro.

The courseware emulator posts each change (HMAC-signed JSON) to passback's
``/events/courseware``; passback verifies it with the courseware connection's
``events_secret``, keeps it in the Live Events table and the coalescer syncs the course
once its burst is over. A course in manual passback mode keeps its events but sends
nothing. All over real HTTP on loopback; expected scores are worked out by hand from the
courseware emulator's raw rows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from passback.emulators import courseware as courseware_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.courseware_events import SIGNATURE_HEADER, signature
from passback.emulators.faults import FaultConfig
from passback.pipeline.plan import Scope
from passback.sandbox.courseware_district import courseware_token, generate_courseware, powerschool_for
from passback.services.coalescer import sync_dispatch
from passback.services.connections import Route
from passback.services.district import update_district
from passback.services.runs import sync_courses
from passback.services.setup import map_category
from passback.settings import Settings
from passback.store import live_events as repo
from passback.store.connections import save_connection
from passback.store.db import Store, make_engine, migrate
from passback.vault import load_key
from passback.web.app import create_app
from tests.conftest import ServedApp

CLIENT_ID, CLIENT_SECRET = "courseware-plugin", "courseware-plugin-secret"
SECRET = "courseware-events-secret"
ROUTE = Route("courseware", "sis")
PATH = "/events/courseware?connection=courseware"


@dataclass
class World:
    courseware: ServedApp
    powerschool: ServedApp
    web: ServedApp
    store: Store
    settings: Settings
    source_id: int
    calls: list[tuple[int, str, list[int]]]

    @property
    def cw(self) -> dict[str, Any]:
        return self.courseware.state

    @property
    def ps(self) -> dict[str, Any]:
        return self.powerschool.state

    def course(self, mode: str) -> str:
        return next(str(c["id"]) for c in self.cw["courses"].values() if c["passback_mode"] == mode)

    def students(self, course_id: str) -> list[int]:
        return sorted(e["user_id"] for e in self.cw["enrollments"].values()
                      if e["course_id"] == int(course_id) and e["role"] == "student")

    def quiz(self, course_id: str) -> dict[str, Any]:
        return next(a for a in sorted(self.cw["activities"].values(), key=lambda a: a["id"])
                    if a["course_id"] == int(course_id) and a["kind"] == "quiz")

    def attempt(self, course_id: str, user_id: int, activity_id: int, score: float) -> None:
        """What a student does in the courseware (its API, not passback)."""
        answer = httpx.post(f"{self.courseware.url}/api/v1/courses/{course_id}/students/{user_id}/attempts",
                            json={"activity_id": activity_id, "score": score},
                            headers={"Authorization": f"Bearer {courseware_token(self.cw)}"}, timeout=30)
        assert answer.status_code == 201, answer.text

    def by_hand(self, course_id: str) -> dict[int, float]:
        """Each started student's course score: completed pages' points plus each activity's latest attempt score."""
        pages = {p["id"]: p["points"] for p in self.cw["pages"].values() if p["course_id"] == int(course_id)}
        scores = {}
        for user_id in self.students(course_id):
            done = [c["page_id"] for c in self.cw["completions"].values()
                    if c["user_id"] == user_id and c["page_id"] in pages]
            latest: dict[int, dict[str, Any]] = {}
            for row in self.cw["attempts"].values():
                if row["user_id"] == user_id and self.cw["activities"][str(row["activity_id"])]["course_id"] == int(
                        course_id):
                    if row["activity_id"] not in latest or row["attempt"] > latest[row["activity_id"]]["attempt"]:
                        latest[row["activity_id"]] = row
            if done or latest:
                scores[user_id] = round(sum(pages[p] for p in done) + sum(a["score"] or 0.0 for a in latest.values()), 4)
        return scores

    def dcid(self, user_id: int) -> int:
        number = int(self.cw["users"][str(user_id)]["sis_id"])
        return next(s["id"] for s in self.ps["students"].values() if s["local_id"] == number)

    def held(self, course_id: str) -> dict[int, float | None]:
        """The course score PowerTeacher Pro holds, per courseware student of the course."""
        by_dcid = {v["studentsdcid"]: v["scorepoints"] for v in self.ps["scores"].values()}
        return {u: by_dcid[self.dcid(u)] for u in self.students(course_id) if self.dcid(u) in by_dcid}

    def score_writes(self, since: int) -> list[int]:
        return [row["studentsdcid"] for w in self.powerschool.writes[since:] if w.path == "/ws/xte/score"
                for row in w.json()["assignment_scores"]]

    def deliveries(self) -> dict[str, Any]:
        return httpx.get(f"{self.courseware.url}/_emulator/events/deliveries", timeout=30).json()

    def post(self, body: bytes, header: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json", **({SIGNATURE_HEADER: header} if header else {})}
        return httpx.post(self.web.url + PATH, content=body, headers=headers, timeout=30)


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path, lease_seconds=30, live_events_quiet_seconds=1.0,
                        live_events_max_wait_seconds=10.0)
    settings.ensure_data_dir()
    engine = make_engine(f"sqlite:///{tmp_path / 'passback.db'}")
    migrate(engine)
    store = Store(engine)
    state = generate_courseware(seed=21, courses=2, students=6, pages=4, activities=5)  # one automatic, one manual
    ps_state = powerschool_for(state, CLIENT_ID, CLIENT_SECRET)
    calls: list[tuple[int, str, list[int]]] = []

    async def counted(source_connection_id: int, course_id: str, event_ids: list[int]) -> str:
        """The default dispatch (a sync in the web app's process), counted."""
        calls.append((source_connection_id, course_id, list(event_ids)))
        return await sync_dispatch(store, settings)(source_connection_id, course_id, event_ids)

    try:
        with ServedApp(courseware_emulator.create_app(state, faults=FaultConfig(seed=5))) as courseware, \
                ServedApp(powerschool_emulator.create_app(ps_state, faults=FaultConfig(seed=6))) as powerschool:
            key = load_key(settings)
            source = save_connection(store, key, name="courseware", kind="courseware", base_url=courseware.url,
                                     credentials={"token": courseware_token(state), "events_secret": SECRET})
            save_connection(store, key, name="sis", kind="powerschool", base_url=powerschool.url,
                            credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
            update_district(store, settings, {"routes": [{"source": "courseware", "destination": "sis"}]}, actor="test")
            for course_id, course in state["courses"].items():  # each course's teacher has a "Courseware" category
                teacher = ps_state["sections"][course["sections"][0]["sis_id"]]["staff_id"]
                category = next(c for c in ps_state["categories"].values()
                                if c["name"] == "Courseware" and c["usersdcid"] == teacher)
                asyncio.run(map_category(store, settings, ROUTE, course_id, "courseware",
                                         str(category["teachercategoryid"])))
            with ServedApp(create_app(settings, store, scheduler=False, coalescer=True, dispatch=counted)) as web:
                yield World(courseware, powerschool, web, store, settings, source.id, calls)
    finally:
        engine.dispose()


def _subscribe(world: World) -> None:
    answer = httpx.post(f"{world.courseware.url}/_emulator/events/subscriptions",
                        json={"url": world.web.url + PATH, "secret": SECRET}, timeout=30)
    assert answer.status_code == 200 and "secret" not in answer.json(), answer.text


def _burst(world: World, course_id: str) -> int:
    """Two quiz attempts by every student of the course (the second the one that counts); the events made."""
    quiz = world.quiz(course_id)
    students = world.students(course_id)
    for user_id in students:
        world.attempt(course_id, user_id, quiz["id"], quiz["points_possible"])
        world.attempt(course_id, user_id, quiz["id"], (user_id % 7) / 2)  # below the 10-point quiz's maximum
    return 2 * len(students)


def _delivered(world: World, count: int) -> list[dict[str, Any]]:
    _wait(lambda: world.deliveries()["pending"] == 0 and len(world.deliveries()["deliveries"]) >= count, 30,
          f"{count} deliveries")
    return world.deliveries()["deliveries"]


def test_an_automatic_courses_burst_of_score_changes_is_one_sync_and_reaches_powerschool(world: World) -> None:
    course = world.course("automatic")
    first = asyncio.run(sync_courses(world.store, world.settings, ROUTE, [Scope(course_id=course)]))[0]
    assert first.status == "succeeded", first
    before = world.held(course)
    _subscribe(world)
    mark = len(world.powerschool.writes)

    events = _burst(world, course)
    expected = world.by_hand(course)
    changed = {u for u, score in expected.items() if before.get(u) != score}
    assert len(changed) >= 4
    deliveries = _delivered(world, events)
    assert len(deliveries) == events and {d["status"] for d in deliveries} == {202}
    assert {d["event_name"] for d in deliveries} == {"score_changed"}

    _wait(lambda: world.held(course) == expected, 30, "the new scores reaching PowerSchool")
    _wait(lambda: repo.pending_courses(world.store) == [], 10, "the events being marked processed")
    assert len(world.calls) == 1  # one burst, one dispatch
    source_id, course_id, event_ids = world.calls[0]
    assert (source_id, course_id, len(event_ids)) == (world.source_id, course, events)
    stored = repo.get_events(world.store, event_ids)
    assert [e.event_time for e in stored] == sorted(e.event_time for e in stored)
    assert all(set(e.detail) == {"student_id", "activity_id", "attempt_id"} for e in stored)  # ids only
    outcome = {e.outcome for e in stored}
    assert len(outcome) == 1 and next(iter(outcome)).startswith("run ")
    assert sorted(world.score_writes(mark)) == sorted(world.dcid(u) for u in changed)  # what changed, once each


def test_a_manual_courses_events_are_kept_and_nothing_is_sent(world: World) -> None:
    course = world.course("manual")
    _subscribe(world)
    mark = len(world.powerschool.writes)
    events = _burst(world, course)
    page = next(p for p in world.cw["pages"].values() if p["course_id"] == int(course))
    auth = {"Authorization": f"Bearer {courseware_token(world.cw)}"}
    added = httpx.post(f"{world.courseware.url}/api/v1/courses/{course}/activities", headers=auth, timeout=30,
                       json={"page_id": page["id"], "title": "Quiz 6", "kind": "quiz", "points_possible": 4})
    assert added.status_code == 201, added.text
    changed = httpx.put(f"{world.courseware.url}/api/v1/courses/{course}/activities/{added.json()['id']}/points",
                        headers=auth, timeout=30, json={"points_possible": 6})
    assert changed.status_code == 200, changed.text
    events += 2  # an activity added, then its points changed
    deliveries = _delivered(world, events)
    assert {d["status"] for d in deliveries} == {202}
    assert [d["event_name"] for d in deliveries][-2:] == ["activity_changed", "activity_changed"]
    _wait(lambda: repo.pending_courses(world.store) == [], 15, "the events being marked processed")
    assert len(world.calls) == 1 and world.calls[0][1] == course
    stored = repo.get_events(world.store, world.calls[0][2])
    assert len(stored) == events and {e.outcome for e in stored} == {"manual-mode"}
    assert world.powerschool.writes[mark:] == []  # nothing sent: not a token request, not a score
    assert world.held(course) == {}


def _event(world: World, name: str = "score_changed") -> bytes:
    course = world.course("automatic")
    student = world.students(course)[1]
    return json.dumps({"id": "evt-1", "name": name, "occurred_at": "2026-09-01T08:00:00.000Z",
                       "course_id": int(course), "student_id": student, "activity_id": world.quiz(course)["id"],
                       "attempt_id": 99}).encode()


def test_a_bad_signature_is_refused_and_nothing_is_stored(world: World) -> None:
    body = _event(world)
    for header in (signature("not-the-secret", body), None, "sha256=" + "0" * 64):
        answer = world.post(body, header)
        assert answer.status_code == 401, answer.text
        assert "events_secret" in answer.json()["detail"]
    tampered = body.replace(b'"attempt_id": 99', b'"attempt_id": 98')
    assert tampered != body
    assert world.post(tampered, signature(SECRET, body)).status_code == 401
    assert repo.count_events(world.store) == 0


def test_a_duplicate_is_stored_once(world: World) -> None:
    body = _event(world)
    first = world.post(body, signature(SECRET, body))
    assert first.status_code == 202 and first.json()["status"] == "stored", first.text
    again = world.post(body, signature(SECRET, body))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert again.json()["event_id"] == first.json()["event_id"]
    ignored = _event(world, name="page_viewed")
    assert world.post(ignored, signature(SECRET, ignored)).json()["status"] == "ignored"
    assert repo.count_events(world.store, world.source_id) == 1
