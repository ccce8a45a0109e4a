"""Live Events end to end: grades changed in the emulated Canvas reach the emulated PowerSchool within seconds.

Canvas posts each change, signed, to passback's ``/events/canvas``; passback keeps it; the
coalescer in the web app waits for the course's burst to end and syncs the course once.
The coalescer's rules (quiet window, longest wait, retries, order) are also shown on the
store directly, with a clock the test moves.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from passback.emulators import canvas as canvas_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.faults import FaultConfig
from passback.pipeline.plan import Scope
from passback.sandbox.district import DistrictShape, generate
from passback.services.coalescer import Coalescer, sync_dispatch
from passback.services.runs import sync_to_destinations
from passback.settings import Settings
from passback.store import live_events as repo
from passback.store.db import Store
from passback.store.history import get_run
from passback.store.live_events import NewEvent
from passback.testing.writes import score_writes
from tests.conftest import District, ServedApp
from tests.e2e.expected import expected_destination_scores, held_destination_scores
from tests.live_events_kit import delivered, events_web, gradable, grade
from tests.web.conftest import DESTINATION, SOURCE

WIDE = DistrictShape(courses=2, sections=2, students=10, assignments=6, seed=11)  # 120 gradable scores in course 2


@pytest.fixture
def wide_district() -> Any:
    canvas_state, ps_state, credentials = generate(WIDE)
    with ServedApp(canvas_emulator.create_app(canvas_state, faults=FaultConfig(seed=1))) as canvas, \
            ServedApp(powerschool_emulator.create_app(ps_state, faults=FaultConfig(seed=2))) as powerschool:
        yield District(canvas, powerschool, credentials, WIDE)


def _wait(check: Any, timeout: float, what: str) -> float:
    """Seconds until ``check()`` held (polled); an assertion error naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_burst_of_100_grade_changes_is_one_sync_and_reaches_powerschool(wide_district: District,
                                                                         tmp_path: Path) -> None:
    district = wide_district
    calls: list[tuple[int, str, list[int]]] = []
    served: list[Any] = []

    async def counted(source_connection_id: int, course_id: str, event_ids: list[int]) -> str:
        """The default dispatch (a sync in the web app's process), counted."""
        calls.append((source_connection_id, course_id, list(event_ids)))
        return await sync_dispatch(served[0].store, served[0].settings)(source_connection_id, course_id, event_ids)

    with events_web(district, tmp_path, coalescer=True, dispatch=counted) as web:
        served.append(web)
        assert web.app.app.state.coalescer.running  # started by the app's lifespan
        course = sorted(district.canvas.state["courses"])[1]  # the course without assignments broken on purpose
        first = asyncio.run(sync_to_destinations(web.store, web.settings, SOURCE, [DESTINATION],
                                                 [Scope(course_id=course)], trigger="manual", actor="test"))
        assert first[0].status == "succeeded"  # the course was synced before (say, last night)
        web.subscribe()
        mark, emitted = len(district.powerschool.writes), len(web.publisher.emitted)
        before = held_destination_scores(district.powerschool.state)

        changes = gradable(district.canvas.state, course)[:100]
        assert len(changes) == 100
        started = time.monotonic()
        for chunk in range(10):  # a teacher working down the gradebook: ten saves of ten grades, 0.2 s apart
            grade(district, [{"course_id": course, "assignment_id": a, "user_id": s,
                              "posted_grade": str(round(points * (0.5 + (i % 5) / 10), 2))}
                             for i, (a, s, points) in enumerate(changes[chunk * 10:(chunk + 1) * 10])])
            time.sleep(0.2)
        events = len(web.publisher.emitted) - emitted  # a submission_updated each, and a grade_change where it moved
        assert 150 < events <= 200
        assert all(d["status"] == 202 for d in delivered(district, events))

        sections = {s["sis_section_id"] for s in district.canvas.state["sections"].values()
                    if str(s["course_id"]) == course}

        def of_course(scores: dict[Any, Any]) -> dict[Any, Any]:
            return {key: value for key, value in scores.items() if key[1] in sections}

        expected = of_course(expected_destination_scores(district.canvas.state, district.powerschool.state))
        seconds = _wait(lambda: of_course(held_destination_scores(district.powerschool.state)) == expected, 30,
                        "the changed grades reaching PowerSchool")
        elapsed = time.monotonic() - started
        _wait(lambda: repo.pending_courses(web.store) == [], 10, "the events being marked processed")

        assert len(calls) == 1  # one burst, one dispatch
        source_id, course_id, event_ids = calls[0]
        assert (source_id, course_id, len(event_ids)) == (web.source_id, course, events)
        stored = repo.get_events(web.store, event_ids)
        assert [e.id for e in stored] == event_ids  # handed over in the order they happened
        assert [e.event_time for e in stored] == sorted(e.event_time for e in stored)
        outcome = {e.outcome for e in stored}
        assert len(outcome) == 1 and next(iter(outcome)).startswith("run ")
        run = get_run(web.store, next(iter(outcome)).split()[1])
        assert run is not None and run["trigger"] == "event" and run["actor"] == "canvas:live-events"
        changed = {key for key, value in expected.items() if before.get(key) != value}
        written = score_writes(district.powerschool.writes[mark:])
        assert len(changed) > 80 and len(written) == len(changed)  # what changed (not late, not missing), only that
        assert set(written.values()) == {1}  # each once
        assert elapsed < 20, f"the grades took {elapsed:.1f} s (the last one {seconds:.1f} s after the burst)"


# --- the coalescer's rules, on the store, with a clock the test moves --------------------------------


T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _source(store: Store, settings: Settings) -> int:
    from passback.store.connections import save_connection
    from passback.vault import load_key

    return save_connection(store, load_key(settings), name="lms", kind="canvas", base_url="https://canvas.example.org",
                           credentials={"token": "t"}).id


def _event(n: int, course: str = "101", *, at: datetime) -> NewEvent:
    return NewEvent(course_id=course, event_name="grade_change", event_time=at, dedupe_key=f"key-{course}-{n}",
                    assignment_id="7", detail={"submission_id": str(n), "user_id": str(n)})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def test_a_burst_is_dispatched_once_when_quiet(sqlite_store: Store, settings: Settings) -> None:
    source = _source(sqlite_store, settings)
    calls: list[tuple[int, str, list[int]]] = []
    clock = Clock()
    coalescer = Coalescer(sqlite_store, settings, lambda s, c, ids: calls.append((s, c, ids)) or "ok",
                          quiet_seconds=2, max_wait_seconds=10, clock=clock)

    async def scenario() -> None:
        for n in range(100):  # 100 grade changes in 5 s, one every 50 ms
            clock.now = T0 + timedelta(milliseconds=50 * n)
            repo.record(sqlite_store, source, _event(n, at=clock.now), now=clock.now)
            assert await coalescer.tick() == []  # never quiet for 2 s, never waiting 10 s
        clock.now += timedelta(seconds=1.9)
        assert await coalescer.tick() == []
        clock.now += timedelta(seconds=0.2)
        done = await coalescer.tick()
        assert len(done) == 1 and done[0].outcome == "ok"
        assert await coalescer.tick() == []  # nothing pending any more

    asyncio.run(scenario())
    assert len(calls) == 1 and calls[0][:2] == (source, "101") and len(calls[0][2]) == 100
    assert repo.pending_courses(sqlite_store) == []


def test_a_course_never_quiet_is_dispatched_after_the_longest_wait(sqlite_store: Store, settings: Settings) -> None:
    source = _source(sqlite_store, settings)
    calls: list[list[int]] = []
    clock = Clock()
    coalescer = Coalescer(sqlite_store, settings, lambda s, c, ids: calls.append(ids), clock=clock)  # 2 s and 10 s

    async def scenario() -> None:
        for n in range(30):  # one change a second for 30 s: never quiet for 2 s
            clock.now = T0 + timedelta(seconds=n)
            repo.record(sqlite_store, source, _event(n, at=clock.now), now=clock.now)
            await coalescer.tick()

    asyncio.run(scenario())
    assert [len(ids) for ids in calls] == [11, 11]  # at 10 s and at 21 s: ten seconds after each burst's first event


def test_a_failed_dispatch_leaves_the_events_pending_and_is_tried_again(sqlite_store: Store,
                                                                         settings: Settings) -> None:
    source = _source(sqlite_store, settings)
    clock = Clock()
    answers: list[Exception | str] = [RuntimeError("the destination is down"), RuntimeError("still down"), "ok"]
    seen: list[list[int]] = []

    async def dispatch(s: int, c: str, ids: list[int]) -> str:
        seen.append(ids)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    coalescer = Coalescer(sqlite_store, settings, dispatch, quiet_seconds=2, max_wait_seconds=10, clock=clock)

    async def scenario() -> None:
        for n in range(3):
            repo.record(sqlite_store, source, _event(n, at=T0), now=T0)
        clock.now = T0 + timedelta(seconds=2)
        assert [d.error for d in await coalescer.tick()] == ["RuntimeError"]
        assert len(repo.pending(sqlite_store, source, "101")) == 3  # still pending, the claim let go
        clock.now += timedelta(seconds=1)
        assert await coalescer.tick() == []  # backing off: 2 s after the first failure
        clock.now += timedelta(seconds=1)
        assert [d.error for d in await coalescer.tick()] == ["RuntimeError"]
        repo.record(sqlite_store, source, _event(3, at=clock.now), now=clock.now)  # a change while it failed
        clock.now += timedelta(seconds=4)
        assert [d.outcome for d in await coalescer.tick()] == ["ok"]

    asyncio.run(scenario())
    assert [len(ids) for ids in seen] == [3, 3, 4]
    assert repo.pending_courses(sqlite_store) == []


def test_each_course_is_its_own_burst_and_events_go_in_the_order_they_happened(sqlite_store: Store,
                                                                                settings: Settings) -> None:
    source = _source(sqlite_store, settings)
    clock = Clock()
    calls: dict[str, list[int]] = {}
    coalescer = Coalescer(sqlite_store, settings, lambda s, c, ids: calls.setdefault(c, ids), clock=clock)
    arrivals = [("101", 3), ("202", 1), ("101", 1), ("101", 2), ("202", 0)]  # (course, seconds into the lesson)
    ids = {}
    for n, (course, second) in enumerate(arrivals):
        ids[(course, second)] = repo.record(sqlite_store, source, _event(n, course, at=T0 + timedelta(seconds=second)),
                                            now=T0).id
    clock.now = T0 + timedelta(seconds=5)
    done = asyncio.run(coalescer.tick())
    assert len(done) == 2
    assert calls == {"101": [ids[("101", 1)], ids[("101", 2)], ids[("101", 3)]],
                     "202": [ids[("202", 0)], ids[("202", 1)]]}


def test_two_coalescers_on_one_store_dispatch_a_burst_once(store: Store, settings: Settings) -> None:
    source = _source(store, settings)
    calls: list[str] = []
    clock = Clock()

    async def slow(s: int, c: str, ids: list[int]) -> str:
        calls.append(c)
        await asyncio.sleep(0.2)
        return "ok"

    first, second = (Coalescer(store, settings, slow, clock=clock) for _ in range(2))
    for n in range(5):
        repo.record(store, source, _event(n, at=T0), now=T0)
    clock.now = T0 + timedelta(seconds=3)

    async def both() -> list[Any]:
        return await asyncio.gather(first.tick(), second.tick())

    results = asyncio.run(both())
    assert calls == ["101"] and sum(len(r) for r in results) == 1
    assert repo.pending_courses(store) == []


def test_the_default_dispatch_leaves_a_manual_only_course_alone(district: District, tmp_path: Path) -> None:
    from passback.services.schedules import set_schedule
    from passback.store.connections import connection_refs

    with events_web(district, tmp_path) as web:
        course = min(district.canvas.state["courses"])
        destination_id = next(c.id for c in connection_refs(web.store) if c.name == DESTINATION)
        set_schedule(web.store, web.settings, source_connection_id=web.source_id,
                     destination_connection_id=destination_id, course_id=course, mode="manual", actor="test")
        writes = len(district.powerschool.writes)
        outcome = asyncio.run(sync_dispatch(web.store, web.settings)(web.source_id, course, []))
        assert outcome == "manual-only" and len(district.powerschool.writes) == writes
