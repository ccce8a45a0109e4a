"""A course's destination sections are read while its source is read, when the last run says which.

Both emulators are served behind one log of arrivals (system, path, moment), so the order
in which requests reached the two servers is the judge. Canvas answers every request
after 100 ms, so reading a course from it takes several tenths of a second: a destination
read that waits for the source starts after the last Canvas request; an early one starts
with the first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.types import ASGIApp, Receive, Scope, Send

from passback.emulators import canvas as canvas_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.faults import FaultConfig
from passback.pipeline.plan import Scope as RunScope
from passback.sandbox.district import generate
from passback.services.runs import Route, sync_courses
from passback.settings import Settings
from passback.store.db import Store
from passback.store.tables import source_cursors
from passback.testing.writes import changes
from tests.conftest import SMALL, District, ServedApp
from tests.e2e.expected import expected_destination_scores, held_destination_scores
from tests.e2e.test_sync_district import connect

ROUTE = Route("lms", "sis")
Arrival = tuple[float, str, str]  # moment, system, path


class Logged:
    def __init__(self, app: ASGIApp, system: str, log: list[Arrival]) -> None:
        self.app, self.system, self.log = app, system, log
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/_emulator"):
            self.log.append((time.monotonic(), self.system, scope["path"]))
        await self.app(scope, receive, send)


@pytest.fixture
def logged_district() -> Iterator[tuple[District, list[Arrival]]]:
    canvas_state, ps_state, credentials = generate(SMALL)
    log: list[Arrival] = []
    with ServedApp(Logged(canvas_emulator.create_app(canvas_state, faults=FaultConfig(latency_ms=100, seed=1)),
                          "canvas", log)) as canvas, \
            ServedApp(Logged(powerschool_emulator.create_app(ps_state, faults=FaultConfig(seed=2)),
                             "powerschool", log)) as powerschool:
        yield District(canvas, powerschool, credentials, SMALL), log


def first_course(district: District) -> str:
    return str(min(c["id"] for c in district.canvas.app.state.emulator.state["courses"].values()))


def sync_one(store: Store, settings: Settings, course: str) -> list:  # type: ignore[type-arg]
    return asyncio.run(sync_courses(store, settings, ROUTE, [RunScope(course_id=course)]))


def section_reads(log: list[Arrival], since: int) -> list[Arrival]:
    return [a for a in log[since:] if a[1] == "powerschool" and a[2].startswith("/ws/v1/section/")
            and a[2].count("/") == 4]


def test_the_last_runs_sections_are_read_beside_the_source(store: Store, tmp_path: Path,
                                                            logged_district: tuple[District, list[Arrival]]) -> None:
    district, log = logged_district
    settings = Settings(data_dir=tmp_path, concurrency=4)
    connect(store, settings, district)
    course = first_course(district)

    mark = len(log)
    [first] = sync_one(store, settings, course)
    canvas_first = [a for a in log[mark:] if a[1] == "canvas"]
    assert section_reads(log, mark)[0][0] > canvas_first[-1][0]  # no cursor yet: after the source, as always

    mark = len(log)
    [second] = sync_one(store, settings, course)
    canvas_second = [a for a in log[mark:] if a[1] == "canvas"]
    sections = section_reads(log, mark)
    assert second.stats["read"] == "changes"
    assert len(sections) == len(section_reads(log, 0)) // 2  # each section once: the early read was used
    assert sections[0][0] < canvas_second[-1][0]  # started while Canvas was still being read (its last answer comes 0.1 s later)
    assert first.counts["created"] > 0 and second.counts["unchanged"] > 0
    assert second.counts["created"] == second.counts["updated"] == 0


def test_sections_that_moved_are_read_again_and_the_early_read_dropped(
        store: Store, tmp_path: Path, logged_district: tuple[District, list[Arrival]]) -> None:
    district, log = logged_district
    settings = Settings(data_dir=tmp_path, concurrency=4)
    connect(store, settings, district)
    course = first_course(district)
    [first] = sync_one(store, settings, course)
    with store.transaction() as db:  # as if the last run had read other sections (a section since moved)
        [kept] = db.execute(sa.select(source_cursors.c.dest_sections)).scalars().all()
        db.execute(source_cursors.update().values(dest_sections=["424242"] + kept[1:]))
    ps = district.powerschool
    written = len(ps.writes)

    mark = len(log)
    [run] = sync_one(store, settings, course)
    asked = [a[2] for a in section_reads(log, mark)]
    assert "/ws/v1/section/424242" in asked  # the early read went out...
    right = sorted(f"/ws/v1/section/{s}" for s in kept)
    assert sorted(set(asked) - {"/ws/v1/section/424242"}) == right  # ...and the right ones after
    assert run.status == first.status and run.counts["error"] == first.counts["error"], run.stats  # the seed's own
    assert changes(ps.writes[written:]) == []  # nothing was planned against the wrong sections
    with store.engine.connect() as db:
        assert db.execute(sa.select(source_cursors.c.dest_sections)).scalar_one() == kept
    assert held_destination_scores(ps.state) == {
        k: v for k, v in expected_destination_scores(district.canvas.app.state.emulator.state, ps.state).items()
        if k in held_destination_scores(ps.state)}
