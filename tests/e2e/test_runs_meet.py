"""Runs that meet: two runs of one course never overlap, in one process or several, on
SQLite and PostgreSQL; a run that loses a race removes nothing it did not create; a run
killed mid-way ends "interrupted" when its lease is taken over.

Every "never doubled" below is read from the PowerTeacher Pro emulator's log of the
writes it accepted, and every "right" from what the seed's rules give on the raw
Canvas data (tests/e2e/expected.py), not from passback's own code.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from passback.pipeline.execute import Executor
from passback.pipeline.gradebook import plan_course
from passback.pipeline.plan import Scope
from passback.pipeline.record import Recorder
from passback.pipeline.run import RunRequest, RunScope
from passback.services import runs
from passback.services.connections import Route, open_route
from passback.services.leases import Busy
from passback.settings import Settings
from passback.store.db import Store
from passback.store.history import get_run, get_run_items
from passback.store.identity import Pairing, load_identities
from passback.store.tables import runs as runs_table
from passback.vault import load_key
from passback.store.connections import get_connection
from tests.conftest import District
from tests.e2e.expected import expected_destination_scores, held_destination_scores
from tests.e2e.test_sync_district import connect

CREATE_PATH = "/ws/xte/section/assignment/"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, concurrency=4)


def _pairing(store: Store, settings: Settings) -> Pairing:
    key = load_key(settings)
    return Pairing(get_connection(store, key, "lms").id, get_connection(store, key, "sis").id)


def _request(pairing: Pairing, course: str, *, actor: str = "test", assignment: str | None = None,
             wait: float = 0.0) -> RunRequest:
    return RunRequest(pipeline="gradebook", source_connection_id=pairing.source_connection_id,
                      destination_connection_id=pairing.destination_connection_id,
                      scope=RunScope(course_id=course, assignment_id=assignment), actor=actor, wait_seconds=wait)


def _courses(district: District) -> list[str]:
    return sorted(district.canvas.state["courses"], key=int)


def _assignment_creates(district: District) -> Counter[tuple[str, tuple[str, ...]]]:
    """Accepted assignment creates, by name and sections: more than one for a key is a double."""
    return Counter(
        (w.json()["_assignmentsections"][0]["name"],
         tuple(sorted(str(s["sectionsdcid"]) for s in w.json()["_assignmentsections"])))
        for w in district.powerschool.app.state.writes if w.method == "POST" and w.path == CREATE_PATH)


def _identity_map_is_whole(store: Store, pairing: Pairing, district: District) -> None:
    """Every destination assignment is linked once, and every link points at one that exists."""
    rows = load_identities(store, pairing, ("assignment",))
    held = set(district.powerschool.state["assignments"])
    linked = Counter(r.dest_id for r in rows.values() if r.dest_id is not None)
    assert all(n == 1 for n in linked.values()), linked
    assert set(linked) == held
    assert all(r.state == "synced" for r in rows.values())


def _change_one_score(district: District, course: str | None = None) -> None:
    canvas = district.canvas.state
    expected = expected_destination_scores(canvas, district.powerschool.state)
    names = {k[0] for k in expected}
    submission = next(s for s in canvas["submissions"].values()
                      if s["score"] is not None and not s["excused"] and s["grade_matches_current_submission"]
                      and canvas["assignments"][str(s["assignment_id"])]["name"] in names
                      and (course is None or str(canvas["assignments"][str(s["assignment_id"])]["course_id"]) == course))
    assignment = canvas["assignments"][str(submission["assignment_id"])]
    new_score = 1.0 if submission["score"] != 1.0 else 2.0
    response = httpx.put(
        f"{district.canvas.url}/api/v1/courses/{assignment['course_id']}/assignments/{assignment['id']}"
        f"/submissions/{submission['user_id']}",
        data={"submission[posted_grade]": str(new_score)},
        headers={"Authorization": f"Bearer {district.credentials.canvas_token}"})
    assert response.status_code == 200


def _destination_is_right(district: District, course: str | None = None) -> None:
    """The destination holds what the seed's rules give, for one course's sections or for all."""
    canvas = district.canvas.state
    sections = {str(s["sis_section_id"]) for s in canvas["sections"].values()
                if course is None or str(s["course_id"]) == course}
    expected = {k: v for k, v in expected_destination_scores(canvas, district.powerschool.state).items()
                if str(k[1]) in sections}
    assert expected and held_destination_scores(district.powerschool.state) == expected


# --- in one process ---------------------------------------------------------------------------------


def test_a_second_run_of_the_course_stops_naming_the_run_in_its_way(store: Store, settings: Settings,
                                                                   district: District) -> None:
    connect(store, settings, district)
    pairing = _pairing(store, settings)
    course, other = _courses(district)[:2]
    planned, go_on = threading.Event(), threading.Event()
    first: dict[str, object] = {}

    def hold_after_planning(_plan: object) -> None:
        planned.set()
        go_on.wait(30)

    def first_run() -> None:
        first["result"] = asyncio.run(runs.run(store, settings, _request(pairing, course, actor="alice"),
                                               on_plan=hold_after_planning))

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert planned.wait(30)
        running = [r for r in _runs(store) if r["status"] == "running"]
        assert len(running) == 1
        with pytest.raises(Busy) as busy:
            asyncio.run(runs.run(store, settings, _request(pairing, course, actor="bob")))
        assert str(busy.value).startswith(f"course {course} is being synced by run {running[0]['id']} since ")
        assert "(started by alice)" in str(busy.value)
        one_assignment = next(str(a["id"]) for a in district.canvas.state["assignments"].values()
                              if str(a["course_id"]) == course)
        with pytest.raises(Busy):  # one assignment of the course is the course's too
            asyncio.run(runs.run(store, settings, _request(pairing, course, assignment=one_assignment)))
        elsewhere = asyncio.run(runs.run(store, settings, _request(pairing, other)))
        assert elsewhere.status in ("succeeded", "completed_with_errors")  # another course is not held up

        threading.Timer(0.5, go_on.set).start()
        waited = asyncio.run(runs.run(store, settings, _request(pairing, course, wait=30)))
    finally:
        go_on.set()
        thread.join(30)
    assert waited.status in ("succeeded", "completed_with_errors")
    assert waited.counts["created"] == 0 and waited.counts["unchanged"] > 0  # it ran after the first, not beside it
    assert not any(r["status"] in ("queued", "running") for r in _runs(store))  # a busy attempt leaves no run behind
    assert all(n == 1 for n in _assignment_creates(district).values())
    _destination_is_right(district)


def _runs(store: Store) -> list[dict[str, object]]:
    with store.engine.connect() as db:
        return [dict(r._mapping) for r in db.execute(sa.select(runs_table)).all()]


def test_a_run_that_lost_the_race_leaves_the_winners_link(store: Store, settings: Settings,
                                                        district: District) -> None:
    """The loser planned a create before the winner's run wrote its link, and carries the
    stale plan out afterwards: it must send nothing and remove nothing it did not create."""
    connect(store, settings, district)
    pairing = _pairing(store, settings)
    course = _courses(district)[0]

    async def race() -> None:
        async with open_route(store, settings, Route("lms", "sis")) as opened:
            stale_plan, context = await plan_course(store, opened.connectors, opened.pairing, Scope(course),
                                                    runs.run_options(settings))
            assert any(step.action == "create" for step in stale_plan.steps)
            winner = await runs.run(store, settings, _request(pairing, course), connectors=opened.connectors)
            assert winner.counts["created"] > 0
            loser_id = runs.submit(store, _request(pairing, course, actor="loser"))
            recorder = Recorder(store, opened.pairing, loser_id)
            await Executor(opened.destination, context, recorder, 4).run(stale_plan)
            recorder.flush()
            loser_items = get_run_items(store, loser_id)
            assert {i["code"] for i in loser_items if i["object_kind"] == "assignment"
                    and i["outcome"] == "skipped"} >= {"assignment-linked-by-another-run"}

    asyncio.run(race())
    assert all(n == 1 for n in _assignment_creates(district).values())
    _identity_map_is_whole(store, pairing, district)
    again = asyncio.run(runs.run(store, settings, _request(pairing, course)))
    assert again.counts["error"] == _errors_by_rule(store, again.run_id)  # only the seed's rule errors, no seed error 2
    _change_one_score(district, course)
    changed = asyncio.run(runs.run(store, settings, _request(pairing, course)))
    assert changed.counts["updated"] == 1
    _destination_is_right(district, course)


def _errors_by_rule(store: Store, run_id: str | None) -> int:
    items = get_run_items(store, run_id or "", ("error",))
    assert not [i for i in items if i["code"] == "duplicate-destination-assignment"]
    return len(items)


# --- across processes ---------------------------------------------------------------------------------


def _cli_env(store: Store, settings: Settings, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PASSBACK_DATA_DIR": str(settings.data_dir), **extra}
    env["PASSBACK_DATABASE_URL"] = store.engine.url.render_as_string(hide_password=False)
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "passback.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_killed_run_is_interrupted_and_its_lease_taken_over(store: Store, tmp_path: Path,
                                                              district: District) -> None:
    settings = Settings(data_dir=tmp_path, concurrency=2, lease_seconds=1.5)
    connect(store, settings, district)
    pairing = _pairing(store, settings)
    course = _courses(district)[0]
    district.powerschool.control("faults", {"latency_ms": 150})
    process = _cli(_cli_env(store, settings, PASSBACK_LEASE_SECONDS="1.5", PASSBACK_CONCURRENCY="1"),
                   "sync", "--course", course, "--source", "lms", "--destination", "sis")
    try:
        killed_id = _wait_for_recorded_items(store)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    district.powerschool.control("faults", {"latency_ms": 0})
    stuck = get_run(store, killed_id)
    assert stuck is not None and stuck["status"] == "running"  # nobody told the store it died
    recorded = Counter(i["outcome"] for i in get_run_items(store, killed_id))

    result = asyncio.run(runs.run(store, settings, _request(pairing, course, wait=15)))
    assert result.status in ("succeeded", "completed_with_errors")
    ended = get_run(store, killed_id)
    assert ended is not None and ended["status"] == "interrupted"
    assert {k: v for k, v in ended["counts"].items() if v} == dict(recorded)
    assert all(n == 1 for n in _assignment_creates(district).values())
    _identity_map_is_whole(store, pairing, district)
    _destination_is_right(district, course)


def _wait_for_recorded_items(store: Store, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.engine.connect() as db:
            row = db.execute(sa.text(
                "SELECT r.id FROM runs r JOIN run_items i ON i.run_id = r.id WHERE r.status = 'running' "
                "GROUP BY r.id HAVING count(*) >= 3")).first()
        if row is not None:
            return str(row[0])
        time.sleep(0.05)
    raise AssertionError("the run recorded nothing within the time allowed")


TRIALS = 10


@pytest.mark.parametrize("trial", range(TRIALS))
def test_two_sync_all_processes_at_once(store: Store, settings: Settings, district: District, trial: int) -> None:
    connect(store, settings, district)
    pairing = _pairing(store, settings)
    district.powerschool.control("faults", {"latency_ms": 5 + 3 * trial})
    district.canvas.control("faults", {"latency_ms": 2 * trial})
    env = _cli_env(store, settings)
    both = [_cli(env, "sync", "--all", "--source", "lms", "--destination", "sis", "--wait", "60", "--json")
            for _ in range(2)]
    outputs = [p.communicate(timeout=240) for p in both]
    for process, (out, errors) in zip(both, outputs, strict=True):
        assert out.startswith("{"), errors[-2000:]
        assert json.loads(out)["counts"]["created"] >= 0
        # exit 2: the district's broken assignments error, by the seed's rules; both processes ran
        assert process.returncode == 2, (out[-1500:], errors[-2000:])
        assert "Traceback" not in errors
    district.powerschool.control("faults", {"latency_ms": 0})
    district.canvas.control("faults", {"latency_ms": 0})

    _destination_is_right(district)
    assert all(n == 1 for n in _assignment_creates(district).values())
    _identity_map_is_whole(store, pairing, district)
    with store.engine.connect() as db:
        statuses = Counter(r.status for r in db.execute(sa.select(runs_table.c.status)).all())
    assert set(statuses) <= {"succeeded", "completed_with_errors"}
    assert sum(statuses.values()) == 2 * len(_courses(district))  # each process ran each course, one after the other

    _change_one_score(district)
    after = asyncio.run(runs.sync_courses(store, settings, Route("lms", "sis"), all_courses=True))
    assert sum(r.counts["updated"] for r in after) == 1
    _destination_is_right(district)
