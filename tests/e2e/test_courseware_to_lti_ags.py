"""Seed 002 end to end: a courseware course's scores pass back into the LMS gradebook over LTI AGS.

The courseware emulator is the source; the Canvas emulator's course holds the same students
(by SIS id) and is the platform passback writes to as an LTI tool. Every score is confirmed
by reading the results back from Canvas's results service. Then seed 002's example: the
instructor gives five points to every page after students started; "Recalculate and sync
scores" sends exactly the raised scores, each higher by five points per completed page,
computed here by hand from the courseware's raw data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from passback.emulators import courseware as courseware_emulator
from passback.emulators.faults import FaultConfig
from passback.pipeline.run import RunRequest, RunScope
from passback.sandbox.courseware_district import courseware_token, generate_courseware, lms_course_for
from passback.services import courseware, matching, runs
from passback.services.connections import Route
from passback.settings import Settings
from passback.store.connections import Connection, save_connection
from passback.store.db import Store
from passback.vault import load_key
from tests.conftest import District, ServedApp
from tests.e2e.test_ags_passback import TODAY, connect_ags, results_read_back

ROUTE = Route("courseware", "canvas-ags")


@dataclass
class World:
    store: Store
    settings: Settings
    district: District
    courseware: ServedApp
    cw: dict[str, Any]
    course_id: str  # in the courseware
    gradebook: int  # the Canvas course
    source: Connection
    destination: Connection

    def students(self) -> list[dict[str, Any]]:
        return [self.cw["users"][str(e["user_id"])] for e in self.cw["enrollments"].values()
                if str(e["course_id"]) == self.course_id and e["role"] == "student"]

    def pages_done(self, user_id: int) -> int:
        return sum(1 for c in self.cw["completions"].values() if c["user_id"] == user_id)

    def score_posts(self) -> list[Any]:
        return [w for w in self.district.canvas.writes if w.method == "POST" and w.path.endswith("/scores")]

    def confirmed(self) -> dict[str, float | None]:
        """Each student's score as Canvas's results service answers it, by the courseware student's SIS id."""
        read_back = results_read_back(self.district, self.store, self.settings, self.destination.credentials,
                                      self.gradebook)
        platform = self.district.canvas.app.state.lti_platform
        canvas_users = self.district.canvas.state["users"]
        sis_of = {platform.subject(u): u.get("sis_user_id") for u in canvas_users.values()}
        return {sis_of[user]: score for (_, user), score in read_back.items()}


@pytest.fixture
def world(sqlite_store: Store, tmp_path: Path, district: District) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path, concurrency=4)
    cw = generate_courseware(seed=21, courses=1, students=9, pages=6, activities=5)
    course_id = next(iter(cw["courses"]))
    with ServedApp(courseware_emulator.create_app(cw, faults=FaultConfig(seed=7))) as served:
        gradebook = lms_course_for(district.canvas.app.state.emulator, cw, course_id)
        _, destination = connect_ags(sqlite_store, settings, district)
        source = save_connection(sqlite_store, load_key(settings), name="courseware", kind="courseware",
                                 base_url=served.url, credentials={"token": courseware_token(cw)})
        container = f"{district.canvas.url}/api/lti/courses/{gradebook}/line_items"
        for section in cw["courses"][course_id]["sections"]:
            asyncio.run(matching.override_section(sqlite_store, settings, ROUTE, course_id, str(section["id"]), container))
        yield World(sqlite_store, settings, district, served, cw, course_id, gradebook, source, destination)


def _by_hand(world: World) -> dict[str, float]:
    """Each started student's course score from the raw data: completed pages' points plus their activities' scores.

    The district's course starts with pages worth nothing; activities earn their latest attempt's score (quizzes
    as stored; others, the fraction earned of the activity's points now, which have not changed yet).
    """
    pages = {p["id"]: p["points"] for p in world.cw["pages"].values() if str(p["course_id"]) == world.course_id}
    activities = {a["id"]: a for a in world.cw["activities"].values() if str(a["course_id"]) == world.course_id}
    scores = {}
    for student in world.students():
        done = [c["page_id"] for c in world.cw["completions"].values() if c["user_id"] == student["id"]]
        latest: dict[int, dict[str, Any]] = {}
        for attempt in world.cw["attempts"].values():
            if attempt["user_id"] == student["id"] and attempt["activity_id"] in activities:
                if attempt["activity_id"] not in latest or attempt["attempt"] > latest[attempt["activity_id"]]["attempt"]:
                    latest[attempt["activity_id"]] = attempt
        if not done and not latest:
            continue  # not started: nothing is sent
        earned = sum(pages[p] for p in done) + sum(a["score"] or 0.0 for a in latest.values())
        scores[student["sis_id"]] = round(earned, 4)
    return scores


def _run(world: World, student: str | None = None) -> Any:
    request = RunRequest(pipeline="gradebook", source_connection_id=world.source.id,
                         destination_connection_id=world.destination.id,
                         scope=RunScope(course_id=world.course_id, student_id=student), actor="test", today=TODAY)
    return asyncio.run(runs.run(world.store, world.settings, request))


def test_courseware_scores_land_in_the_lms_through_ags_and_recalculate_sends_only_the_raised(world: World) -> None:
    first = _run(world)
    assert first.failure is None and first.counts["error"] == 0, (first.status, first.failure)
    expected = _by_hand(world)
    assert len(expected) >= 5
    assert {sis: score for sis, score in world.confirmed().items() if score is not None} == expected
    assert len(world.score_posts()) == len(expected)  # one score each, every one confirmed by the results service

    # Seed 002's example: five points for every page, after students started
    for page in [p for p in world.cw["pages"].values() if str(p["course_id"]) == world.course_id]:
        answer = httpx.put(f"{world.courseware.url}/api/v1/courses/{world.course_id}/pages/{page['id']}/points",
                           json={"points": 5}, headers={"Authorization": f"Bearer {courseware_token(world.cw)}"})
        assert answer.status_code == 200, answer.text
    raised = {s["sis_id"]: expected[s["sis_id"]] + 5 * world.pages_done(s["id"]) for s in world.students()
              if s["sis_id"] in expected}
    changed = {sis for sis in raised if raised[sis] != expected[sis]}
    assert changed and changed != set(raised)  # some students completed pages, one started only with a quiz

    preview = asyncio.run(courseware.recalculate(world.store, world.settings, ROUTE, world.course_id, dry_run=True,
                                                 actor="teacher"))
    sis_by_user = {str(s["id"]): s["sis_id"] for s in world.students()}
    assert {sis_by_user[c["student_id"]]: c["new"] for c in preview["changes"]} == {s: raised[s] for s in changed}
    posts_before = len(world.score_posts())
    done = asyncio.run(courseware.recalculate(world.store, world.settings, ROUTE, world.course_id, actor="teacher"))
    assert done["status"] in ("succeeded", "completed_with_errors"), done
    assert len(world.score_posts()) - posts_before == len(changed)  # only the raised scores went
    assert {sis: score for sis, score in world.confirmed().items() if score is not None} == raised
