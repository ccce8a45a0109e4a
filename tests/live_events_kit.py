"""What the Live Events tests share: passback's web app served beside a district, and the Canvas emulator's events.

The web app runs under uvicorn on loopback with settings of the test's choosing (the
JWKS URL is the Canvas emulator's), the district's Canvas and PowerSchool connections
saved and routed. ``coalescer`` and ``dispatch`` go to ``create_app``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from passback.emulators.canvas_live_events import LiveEventsPublisher
from passback.services import accounts
from passback.services.coalescer import Dispatch
from passback.settings import Settings
from passback.store.db import Store, make_engine, migrate
from passback.web.app import create_app
from tests.conftest import District, ServedApp
from tests.web.conftest import SOURCE, save_district_connections

EVENTS_PATH = "/events/canvas"


@dataclass
class EventsWeb:
    app: ServedApp
    store: Store
    settings: Settings
    district: District
    source_id: int

    @property
    def url(self) -> str:
        return self.app.url

    @property
    def publisher(self) -> LiveEventsPublisher:
        return self.district.canvas.app.state.live_events

    @property
    def keys(self) -> Any:
        """passback's cache of the publisher's keys (``fetches`` counts the JWKS fetches)."""
        return self.app.app.state.live_event_keys

    def post(self, body: bytes | str, *, content_type: str = "application/jwt",
             connection: str | None = None) -> httpx.Response:
        params = {"connection": connection} if connection else None
        return httpx.post(self.url + EVENTS_PATH, content=body, params=params,
                          headers={"Content-Type": content_type}, timeout=30)

    def subscribe(self, *, signed: bool = True, events: list[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"url": self.url + EVENTS_PATH, "signed": signed}
        if events is not None:
            body["events"] = events
        return self.district.canvas.control("live_events/subscriptions", body)


@contextmanager
def events_web(district: District, tmp_path: Path, *, coalescer: bool = False, dispatch: Dispatch | None = None,
               **overrides: Any) -> Iterator[EventsWeb]:
    """passback's web app beside ``district``; ``overrides`` are Settings fields."""
    values: dict[str, Any] = {"data_dir": tmp_path, "lease_seconds": 30,
                              "live_events_jwks_url": f"{district.canvas.url}/live_events/jwks"}
    settings = Settings(**{**values, **overrides})
    settings.ensure_data_dir()
    engine = make_engine(f"sqlite:///{tmp_path / 'passback.db'}")
    migrate(engine)
    store = Store(engine)
    save_district_connections(store, settings, district)
    source_id = accounts.source_connection_id(store, SOURCE)
    try:
        with ServedApp(create_app(settings, store, scheduler=False, coalescer=coalescer, dispatch=dispatch)) as served:
            yield EventsWeb(served, store, settings, district, source_id)
    finally:
        engine.dispose()


def delivered(district: District, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Wait until the Canvas emulator has no delivery pending and at least ``count`` were tried; the log."""
    deadline = time.monotonic() + timeout
    while True:
        found = district.canvas.control("live_events/deliveries")
        if found["pending"] == 0 and len(found["deliveries"]) >= count:
            return found["deliveries"]
        if time.monotonic() > deadline:
            raise AssertionError(f"the emulator delivered {len(found['deliveries'])} events, {found['pending']} "
                                 f"pending, not {count}")
        time.sleep(0.05)


def grade(district: District, grades: list[dict[str, Any]], grader_id: int | None = None) -> None:
    """Grades saved in the emulated Canvas's gradebook (each emits its Live Events)."""
    answer = httpx.post(f"{district.canvas.url}/_emulator/live_events/grades",
                        json={"grades": grades, "grader_id": grader_id}, timeout=30)
    assert answer.status_code == 200, answer.text


def gradable(state: dict[str, Any], course_id: str) -> list[tuple[int, int, float]]:
    """(assignment, student, points possible) of every points assignment of the course, by student."""
    course = int(course_id)
    students = sorted(e["user_id"] for e in state["enrollments"].values()
                      if e["course_id"] == course and e["type"] == "StudentEnrollment")
    assignments = sorted((a for a in state["assignments"].values() if a["course_id"] == course
                          and a.get("grading_type") == "points" and a.get("points_possible")
                          and a.get("post_to_sis") and a.get("published")), key=lambda a: a["id"])
    return [(a["id"], s, float(a["points_possible"])) for s in students for a in assignments]
