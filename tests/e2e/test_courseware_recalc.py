"""Seed 002 end to end: a courseware course (S4) passed back to PowerTeacher Pro, then
"Recalculate & Sync Scores" (R7) after the instructor gives every page five points, and
"Sync Score" for one student. Expected values are worked out here, by hand, from the
courseware emulator's raw rows; what was sent is read from the PowerSchool emulator's
write log and state."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from passback.cli import app
from passback.emulators import courseware as courseware_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.faults import FaultConfig
from passback.pipeline.plan import Scope
from passback.sandbox.courseware_district import courseware_token, generate_courseware, powerschool_for
from passback.services.connections import Route
from passback.services.courseware import is_manual, passback_mode
from passback.services.runs import sync_courses
from passback.services.setup import map_category
from passback.settings import Settings
from passback.store.connections import save_connection
from passback.store.db import Store
from passback.vault import load_key
from tests.conftest import ServedApp

CLIENT_ID, CLIENT_SECRET = "courseware-plugin", "courseware-plugin-secret"
ROUTE = Route("courseware", "sis")
ROUTE_ARGS = ["--source", "courseware", "--destination", "sis"]
NOT_CHANGES = frozenset({"/oauth/access_token", "/ws/xte/assignment/lookup"})  # POSTs that only read


@dataclass
class World:
    courseware: ServedApp
    powerschool: ServedApp
    store: Store
    settings: Settings
    course_id: str

    @property
    def cw(self) -> dict[str, Any]:
        return self.courseware.state

    @property
    def ps(self) -> dict[str, Any]:
        return self.powerschool.state

    def instructor(self, method: str, path: str, body: Any) -> None:
        """What the instructor does in the courseware's own screens (its API, not passback)."""
        answer = httpx.request(method, f"{self.courseware.url}/api/v1/courses/{self.course_id}{path}", json=body,
                               headers={"Authorization": f"Bearer {courseware_token(self.cw)}"})
        assert answer.status_code == 200, answer.text

    def students(self) -> list[int]:
        return sorted(e["user_id"] for e in self.cw["enrollments"].values()
                      if e["course_id"] == int(self.course_id) and e["role"] == "student")

    def pages_done(self, user_id: int) -> int:
        return sum(1 for c in self.cw["completions"].values() if c["user_id"] == user_id)

    def started(self, user_id: int) -> bool:
        return self.pages_done(user_id) > 0 or any(a["user_id"] == user_id for a in self.cw["attempts"].values())

    def dcid(self, user_id: int) -> int:
        number = int(self.cw["users"][str(user_id)]["sis_id"])
        return next(s["id"] for s in self.ps["students"].values() if s["local_id"] == number)

    def held(self) -> dict[int, float | None]:
        """The course score PowerTeacher Pro holds now, per courseware student."""
        by_dcid = {v["studentsdcid"]: v["scorepoints"] for v in self.ps["scores"].values()}
        return {u: by_dcid[self.dcid(u)] for u in self.students() if self.dcid(u) in by_dcid}

    def gradebook_writes(self, since: int) -> list[Any]:
        """Writes to the gradebook after write number ``since`` (a token request or a lookup changes nothing)."""
        return [w for w in self.powerschool.writes[since:] if w.path not in NOT_CHANGES]

    def score_writes(self, since: int) -> list[int]:
        """The student of every score row PowerTeacher Pro accepted after write number ``since``."""
        return [row["studentsdcid"] for w in self.powerschool.writes[since:] if w.path == "/ws/xte/score"
                for row in w.json()["assignment_scores"]]


@pytest.fixture
def world(env: tuple[Store, Settings]) -> Iterator[World]:
    store, settings = env
    state = generate_courseware(seed=21, courses=1, students=9, pages=6, activities=5)
    ps_state = powerschool_for(state, CLIENT_ID, CLIENT_SECRET)
    with ServedApp(courseware_emulator.create_app(state, faults=FaultConfig(seed=5))) as courseware, \
            ServedApp(powerschool_emulator.create_app(ps_state, faults=FaultConfig(seed=6))) as powerschool:
        key = load_key(settings)
        save_connection(store, key, name="courseware", kind="courseware", base_url=courseware.url,
                        credentials={"token": courseware_token(state)})
        save_connection(store, key, name="sis", kind="powerschool", base_url=powerschool.url,
                        credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
        course_id = next(iter(state["courses"]))
        category = next(c for c in ps_state["categories"].values() if c["name"] == "Courseware")
        asyncio.run(map_category(store, settings, ROUTE, course_id, "courseware", str(category["teachercategoryid"])))
        yield World(courseware, powerschool, store, settings, course_id)


def recalc(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["courseware", "recalc", *args, *ROUTE_ARGS, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def first_sync(world: World) -> dict[int, float | None]:
    result = asyncio.run(sync_courses(world.store, world.settings, ROUTE, [Scope(course_id=world.course_id)]))[0]
    assert result.status == "succeeded", result
    held = world.held()
    assert set(held) == {u for u in world.students() if world.started(u)}  # not started: nothing sent, never a 0
    return held


def test_recalculate_after_five_points_per_page_sends_exactly_the_raised_scores(world: World) -> None:
    before = first_sync(world)
    assert set(before.values()) != {None}
    raised = {u: 5.0 * world.pages_done(u) for u in before if world.pages_done(u)}  # the seed's example, by hand
    assert raised and len(raised) < len(before)  # some started students completed no page: theirs stays

    for page in [p for p in world.cw["pages"].values() if p["course_id"] == int(world.course_id)]:
        world.instructor("PUT", f"/pages/{page['id']}/points", {"points": 5})
    writes_before = len(world.powerschool.writes)

    preview = recalc("--course", world.course_id, "--dry-run")
    assert world.gradebook_writes(writes_before) == []  # a dry run sends nothing
    assert preview["run_id"] is None and preview["status"] == "dry_run"
    shown = {int(c["student_id"]): c for c in preview["changes"]}
    assert {u: c["delta"] for u, c in shown.items()} == raised
    assert all(c["old"] == before[u] and c["new"] == before[u] + raised[u] for u, c in shown.items())
    assert {int(u) for u in preview["unchanged"]} == set(before) - set(raised)
    assert {int(r["student_id"]) for r in preview["left"]} == set(world.students()) - set(before)  # never started
    assert all(r["code"] == "student-not-graded" and "has not started" in r["reason"] for r in preview["left"])
    pages = sum(1 for p in world.cw["pages"].values() if p["course_id"] == int(world.course_id))
    possible = preview["column"]["points_possible"]
    assert possible["new"] - possible["sent"] == 5.0 * pages and preview["column"]["action"] == "update"

    done = recalc("--course", world.course_id)
    assert done["status"] == "succeeded" and done["run_id"]
    sent = world.score_writes(writes_before)
    assert sorted(sent) == sorted(world.dcid(u) for u in raised)  # one write per raised student, no other
    assert {int(c["student_id"]): c["outcome"] for c in done["changes"]} == dict.fromkeys(raised, "updated")
    assert world.held() == {u: v + raised.get(u, 0.0) for u, v in before.items()}
    column = [w for w in world.gradebook_writes(writes_before) if w.path.startswith("/ws/xte/section/assignment/")]
    assert len(column) == 1 and column[0].method == "PUT"  # the new points possible, once

    again = len(world.powerschool.writes)
    assert recalc("--course", world.course_id)["changes"] == [] and world.gradebook_writes(again) == []


def test_a_quiz_whose_points_changed_is_not_regraded(world: World) -> None:
    before = first_sync(world)
    quiz = next(a for a in world.cw["activities"].values() if a["kind"] == "quiz"
                and any(t["activity_id"] == a["id"] for t in world.cw["attempts"].values()))
    was = quiz["points_possible"]
    world.instructor("PUT", f"/activities/{quiz['id']}/points", {"points_possible": was * 3})
    writes_before = len(world.powerschool.writes)
    done = recalc("--course", world.course_id)
    assert done["changes"] == [] and world.score_writes(writes_before) == []  # the stored quiz scores stand
    assert world.held() == before
    possible = done["column"]["points_possible"]
    assert possible["new"] - possible["sent"] == was * 2  # only the column's possible moves
    takers = {t["user_id"] for t in world.cw["attempts"].values() if t["activity_id"] == quiz["id"]}
    for user_id in takers:
        quiz_part = next(a for a in done["students"][str(user_id)]["activities"] if a["activity_id"] == str(quiz["id"]))
        assert quiz_part["rule"] == "stored"


def test_sync_score_for_one_student_sends_only_that_student(world: World) -> None:
    before = first_sync(world)
    for page in [p for p in world.cw["pages"].values() if p["course_id"] == int(world.course_id)]:
        world.instructor("PUT", f"/pages/{page['id']}/points", {"points": 2})
    raised = sorted(u for u in before if world.pages_done(u))
    assert len(raised) > 1
    one = raised[-1]
    writes_before = len(world.powerschool.writes)

    done = recalc("--course", world.course_id, "--student", str(one))
    assert world.score_writes(writes_before) == [world.dcid(one)]
    assert [(int(c["student_id"]), c["delta"]) for c in done["changes"]] == [(one, 2.0 * world.pages_done(one))]
    assert list(done["students"]) == [str(one)]
    assert world.held()[one] == before[one] + 2.0 * world.pages_done(one)
    assert all(world.held()[u] == before[u] for u in raised if u != one)  # the others wait for their sync

    rest = recalc("--course", world.course_id, "--dry-run")
    assert sorted(int(c["student_id"]) for c in rest["changes"]) == [u for u in raised if u != one]


def test_passback_mode_is_read_from_the_course(world: World) -> None:
    store, settings = world.store, world.settings
    assert asyncio.run(passback_mode(store, settings, "courseware", world.course_id)) == "automatic"
    world.instructor("PUT", "/settings", {"passback_mode": "manual"})
    assert asyncio.run(is_manual(store, settings, "courseware", world.course_id)) is True
    shown = recalc("--course", world.course_id, "--dry-run")
    assert shown["passback_mode"] == "manual"  # a person asked: a manual course is recalculated all the same


def test_recalc_refuses_a_source_that_is_not_courseware_and_an_unknown_student(world: World) -> None:
    save_connection(world.store, load_key(world.settings), name="lms", kind="canvas", base_url=world.courseware.url,
                    credentials={"token": "t"})
    wrong = CliRunner().invoke(app, ["courseware", "recalc", "--course", world.course_id, "--source", "lms",
                                     "--destination", "sis"])
    assert wrong.exit_code == 1 and "canvas connection" in wrong.stderr
    unknown = CliRunner().invoke(app, ["courseware", "recalc", "--course", world.course_id, "--student", "424242",
                                       *ROUTE_ARGS])
    assert unknown.exit_code == 1 and "no such record" in unknown.stderr


def test_the_cli_as_a_process_shows_who_would_change_and_by_how_much(world: World) -> None:
    before = first_sync(world)
    for page in [p for p in world.cw["pages"].values() if p["course_id"] == int(world.course_id)]:
        world.instructor("PUT", f"/pages/{page['id']}/points", {"points": 5})
    environment = {**os.environ, "PASSBACK_DATA_DIR": str(world.settings.data_dir)}
    environment.pop("PASSBACK_DATABASE_URL", None)
    shown = subprocess.run([sys.executable, "-m", "passback.cli", "courseware", "recalc", "--course", world.course_id,
                            "--dry-run", *ROUTE_ARGS], env=environment, text=True, capture_output=True, timeout=120,
                           check=False)
    assert shown.returncode == 0, shown.stderr
    assert "Would change" in shown.stdout and "dry run dry_run" in shown.stdout
    for user_id in (u for u in before if world.pages_done(u)):
        assert f"+{5 * world.pages_done(user_id)}" in shown.stdout


def test_a_manual_passback_course_is_never_sent_by_the_nightly_schedule(world: World) -> None:
    """Seed 002: with manual grade passback, scores go only when a student or an instructor asks."""
    from datetime import UTC, datetime, timedelta

    from passback.services.schedules import run_due, set_schedule
    from passback.store.connections import connection_refs
    from passback.store.tables import course_schedules

    refs = {c.name: c.id for c in connection_refs(world.store)}
    set_schedule(world.store, world.settings, source_connection_id=refs["courseware"],
                 destination_connection_id=refs["sis"], course_id=world.course_id, mode="nightly", actor="admin")
    with world.store.transaction() as db:  # the night has come
        db.execute(course_schedules.update().values(next_run_at=datetime.now(UTC) - timedelta(minutes=1)))
    world.instructor("PUT", "/settings", {"passback_mode": "manual"})
    before = len(world.powerschool.writes)
    assert asyncio.run(run_due(world.store, world.settings)) == []
    assert world.gradebook_writes(before) == []  # nothing sent
    world.instructor("PUT", "/settings", {"passback_mode": "automatic"})
    with world.store.transaction() as db:
        db.execute(course_schedules.update().values(next_run_at=datetime.now(UTC) - timedelta(minutes=1)))
    assert len(asyncio.run(run_due(world.store, world.settings))) == 1  # automatic: the schedule sends
    assert world.score_writes(before)
