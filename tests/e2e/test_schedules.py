"""Nightly and manual-only courses, the district's settings they obey, and the scheduler that
runs them: from the store alone, so a restarted server carries on, and once per night however
many schedulers tick. On SQLite and PostgreSQL, against the emulated Canvas and PowerSchool."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from passback.errors import Invalid, NotFound
from passback.services import runs
from passback.services.district import DistrictSettings, get_district, update_district
from passback.services.scheduler import EmbeddedScheduler
from passback.services.schedules import (
    course_key,
    get_schedule,
    is_manual_only,
    list_schedules,
    next_nightly,
    run_due,
    set_schedule,
    spread,
    window_on,
)
from passback.settings import Settings
from passback.store import schedules as schedule_store
from passback.store.connections import connection_refs, save_connection
from passback.store.db import Store, make_engine
from passback.store.leases import release, take
from passback.store.tables import audit_log
from passback.store.tables import runs as runs_table
from passback.vault import load_key
from tests.conftest import District
from tests.e2e.test_sync_district import connect

CHICAGO = ZoneInfo("America/Chicago")
Z = UTC


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=Z)  # type: ignore[misc]


# --- next_nightly: a pure function ------------------------------------------------------------------

KEY = "7:8:course-1234"
assert 0.01 < spread(KEY) < 0.99  # the cases below lean on the course's moment not being at a window's very edge

# (what, after, window start, window end, the window (UTC) the answer must fall in)
CASES = [
    ("winter night", utc(2026, 1, 15, 18), "01:00", "05:00", (utc(2026, 1, 16, 7), utc(2026, 1, 16, 11))),
    ("summer night", utc(2026, 7, 1, 17), "01:00", "05:00", (utc(2026, 7, 2, 6), utc(2026, 7, 2, 10))),
    ("at the window's opening: tonight", utc(2026, 1, 16, 7), "01:00", "05:00", (utc(2026, 1, 16, 7), utc(2026, 1, 16, 11))),
    ("a second before it closes: tomorrow", utc(2026, 1, 16, 10, 59, 59), "01:00", "05:00",
     (utc(2026, 1, 17, 7), utc(2026, 1, 17, 11))),
    ("crossing midnight, from the afternoon", utc(2026, 1, 15, 18), "22:00", "02:00",
     (utc(2026, 1, 16, 4), utc(2026, 1, 16, 8))),
    ("crossing midnight, at its opening", utc(2026, 1, 16, 4), "22:00", "02:00", (utc(2026, 1, 16, 4), utc(2026, 1, 16, 8))),
    ("crossing midnight, late in the window that opened yesterday", utc(2026, 1, 16, 7, 59, 59), "22:00", "02:00",
     (utc(2026, 1, 17, 4), utc(2026, 1, 17, 8))),
    # 2026-03-08: at 02:00 CST the clocks go to 03:00 CDT. 01:00 CST is 07:00Z; 05:00 CDT is 10:00Z: a 3-hour window.
    ("spring forward", utc(2026, 3, 7, 18), "01:00", "05:00", (utc(2026, 3, 8, 7), utc(2026, 3, 8, 10))),
    # 22:00 CST on the 7th is 04:00Z; 02:00 on the 8th does not exist and is read as 03:00 CDT, 08:00Z.
    ("spring forward, crossing midnight", utc(2026, 3, 7, 18), "22:00", "02:00", (utc(2026, 3, 8, 4), utc(2026, 3, 8, 8))),
    ("the night after spring forward", utc(2026, 3, 8, 12), "01:00", "05:00", (utc(2026, 3, 9, 6), utc(2026, 3, 9, 10))),
    # 2026-11-01: at 02:00 CDT the clocks go back to 01:00 CST. 01:00 (its first time, CDT) is 06:00Z; 05:00 CST is
    # 11:00Z: a 5-hour window.
    ("fall back", utc(2026, 10, 31, 17), "01:00", "05:00", (utc(2026, 11, 1, 6), utc(2026, 11, 1, 11))),
    ("fall back, crossing midnight", utc(2026, 10, 31, 17), "22:00", "02:00", (utc(2026, 11, 1, 3), utc(2026, 11, 1, 8))),
    ("the night after fall back", utc(2026, 11, 1, 12), "01:00", "05:00", (utc(2026, 11, 2, 7), utc(2026, 11, 2, 11))),
]


@pytest.mark.parametrize(("after", "start", "end", "window"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_next_nightly_is_the_courses_moment_in_the_next_window(after: datetime, start: str, end: str,
                                                               window: tuple[datetime, datetime]) -> None:
    moment = next_nightly(after, start, end, "America/Chicago", key=KEY)
    opens, closes = window
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
    assert moment > after and opens <= moment < closes
    assert moment == opens + timedelta(seconds=int((closes - opens).total_seconds() * spread(KEY)))
    # The same course, the same answer, whatever zone "after" is given in, and in a zone object too.
    assert next_nightly(after.astimezone(CHICAGO), start, end, CHICAGO, key=KEY) == moment
    local = moment.astimezone(CHICAGO).time()
    s, e = time.fromisoformat(start), time.fromisoformat(end)
    assert (s <= local < e) if s < e else (local >= s or local < e)


def test_at_the_courses_moment_the_next_is_tomorrows() -> None:
    opens, _ = window_on(datetime(2026, 1, 16).date(), "01:00", "05:00", "America/Chicago")
    moment = next_nightly(opens, "01:00", "05:00", "America/Chicago", key=KEY)
    assert next_nightly(moment, "01:00", "05:00", "America/Chicago", key=KEY) == moment + timedelta(days=1)
    assert next_nightly(moment.replace(tzinfo=None), "01:00", "05:00", "America/Chicago", key=KEY) > moment  # naive: UTC


def test_a_window_the_clocks_skip_runs_when_they_resume() -> None:
    """02:00-03:00 does not happen on 2026-03-08 in Chicago: that night the course runs at 03:00 CDT (08:00Z)."""
    moment = next_nightly(utc(2026, 3, 7, 18), "02:00", "03:00", "America/Chicago", key=KEY)
    assert moment == utc(2026, 3, 8, 8) and moment.astimezone(CHICAGO).time() == time(3)
    assert utc(2026, 3, 9, 7) <= next_nightly(moment, "02:00", "03:00", "America/Chicago", key=KEY) < utc(2026, 3, 9, 8)


def test_two_hundred_courses_spread_across_the_window() -> None:
    after = utc(2026, 2, 2, 18)
    moments = [next_nightly(after, "01:00", "05:00", "America/Chicago", key=course_key(1, 2, str(1000 + n)))
               for n in range(200)]
    assert all(utc(2026, 2, 3, 7) <= m < utc(2026, 2, 3, 11) for m in moments)
    assert len(set(moments)) >= 195 and len({m.replace(second=0) for m in moments}) >= 100
    assert max(moments) - min(moments) > timedelta(hours=3, minutes=30)
    assert moments == [next_nightly(after, "01:00", "05:00", "America/Chicago", key=course_key(1, 2, str(1000 + n)))
                       for n in range(200)]  # the same each time it is asked: nothing random


def test_a_window_without_length_is_refused() -> None:
    with pytest.raises(Invalid, match="give it a length"):
        next_nightly(utc(2026, 1, 1), "01:00", "01:00", "America/Chicago")
    with pytest.raises(Invalid, match="HH:MM"):
        next_nightly(utc(2026, 1, 1), "1am", "05:00", "America/Chicago")


# --- the district's settings -------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, concurrency=4, district_title_limit=40, block_closed_terms=False)


def _save_connections(store: Store, settings: Settings) -> dict[str, int]:
    key = load_key(settings)
    save_connection(store, key, name="lms", kind="canvas", base_url="https://lms.example", credentials={"token": "t"})
    save_connection(store, key, name="sis", kind="powerschool", base_url="https://sis.example",
                    credentials={"client_id": "i", "client_secret": "s"})
    return {ref.name: ref.id for ref in connection_refs(store)}


def test_district_settings_default_to_the_environment_and_the_store_wins(store: Store, settings: Settings) -> None:
    district = get_district(store, settings)
    assert district == DistrictSettings(title_limit=40, block_closed_terms=False)
    assert (district.nightly_window_start, district.nightly_window_end, district.time_zone) == (
        "01:00", "05:00", "America/Chicago")
    options = runs.run_options(settings, store)
    assert (options.district_title_limit, options.block_closed_terms) == (40, False)

    _save_connections(store, settings)
    changed = update_district(store, settings, {"title_limit": 60, "block_closed_terms": True,
                                                "time_zone": "America/New_York",
                                                "routes": [{"source": "lms", "destination": "sis"}]}, actor="admin")
    assert changed.title_limit == 60 and changed.block_closed_terms and changed.destination_of("lms") == "sis"
    assert get_district(store, settings) == changed
    options = runs.run_options(settings, store)
    assert (options.district_title_limit, options.block_closed_terms, options.concurrency) == (60, True, 4)
    assert runs.run_options(settings).district_title_limit == 40  # no store: the environment, as before


def test_a_value_an_admin_saved_stays_when_the_environment_changes(store: Store, settings: Settings) -> None:
    update_district(store, settings, {"title_limit": 40}, actor="admin")  # the environment's value, chosen all the same
    later = settings.model_copy(update={"district_title_limit": 50, "block_closed_terms": True})
    assert get_district(store, later).title_limit == 40 and get_district(store, later).block_closed_terms
    assert runs.run_options(later, store).district_title_limit == 40


@pytest.mark.parametrize(("change", "named"), [
    ({"title_limit": 0}, "title_limit: .* \\(allowed: a whole number from 1 to 255"),
    ({"title_limit": 256}, "title_limit"),
    ({"block_closed_terms": "perhaps"}, "block_closed_terms: .*allowed: true or false"),
    ({"nightly_window_start": "25:00"}, "nightly_window_start: .*HH:MM"),
    ({"nightly_window_end": "01:00"}, "nightly_window_end: the window must not start and end at the same time"),
    ({"time_zone": "Mars/Olympus"}, "time_zone: .*IANA time zone"),
    ({"routes": [{"source": "lms"}]}, "routes"),
    ({"routes": [{"source": "lms", "destination": "sis"}, {"source": "lms", "destination": "sis"}]}, "listed twice"),
    ({"routes": [{"source": "nowhere", "destination": "sis"}]}, "no connection named 'nowhere'"),
    ({"routes": [{"source": "sis", "destination": "lms"}]}, "'sis' is a powerschool connection, which cannot be a source"),
    ({"colour": "blue"}, "colour is not a district setting; the settings are title_limit"),
])
def test_a_bad_district_setting_is_refused_by_name(store: Store, settings: Settings, change: dict[str, object],
                                                   named: str) -> None:
    _save_connections(store, settings)
    with pytest.raises(Invalid, match=named):
        update_district(store, settings, change, actor="admin")
    assert get_district(store, settings) == DistrictSettings(title_limit=40, block_closed_terms=False)  # nothing saved


def test_a_changed_window_moves_the_nightly_schedules(store: Store, settings: Settings) -> None:
    ids = _save_connections(store, settings)
    set_schedule(store, settings, source_connection_id=ids["lms"], destination_connection_id=ids["sis"], course_id="9",
                 mode="nightly", actor="t")
    update_district(store, settings, {"nightly_window_start": "20:00", "nightly_window_end": "21:00",
                                      "time_zone": "Europe/Berlin"}, actor="admin")
    found = get_schedule(store, source_connection_id=ids["lms"], destination_connection_id=ids["sis"], course_id="9")
    assert found is not None
    local = found["next_run_at"].astimezone(ZoneInfo("Europe/Berlin")).time()
    assert time(20) <= local < time(21)


# --- schedules ----------------------------------------------------------------------------------------


def test_set_get_list_and_remove_a_schedule(store: Store, settings: Settings) -> None:
    ids = _save_connections(store, settings)
    where = {"source_connection_id": ids["lms"], "destination_connection_id": ids["sis"]}
    now = utc(2026, 4, 1, 15)
    nightly = set_schedule(store, settings, **where, course_id="101", mode="nightly", actor="ms.rivera", now=now)
    assert nightly is not None and nightly["mode"] == "nightly" and nightly["actor"] == "ms.rivera"
    assert nightly["next_run_at"] == next_nightly(now, "01:00", "05:00", "America/Chicago",
                                                  key=course_key(ids["lms"], ids["sis"], "101"))
    manual = set_schedule(store, settings, **where, course_id="102", mode="manual", actor="ms.rivera")
    assert manual is not None and manual["next_run_at"] is None
    assert [(s["course_id"], s["mode"]) for s in list_schedules(store)] == [("101", "nightly"), ("102", "manual")]
    assert [s["course_id"] for s in list_schedules(store, mode="manual")] == ["102"]

    assert is_manual_only(store, **where, course_id="102")
    assert is_manual_only(store, source_connection_id=ids["lms"], course_id="102")  # on any route from this source
    assert not is_manual_only(store, **where, course_id="101") and not is_manual_only(store, **where, course_id="103")

    again = set_schedule(store, settings, **where, course_id="102", mode="nightly", actor="admin")
    assert again is not None and again["id"] == manual["id"] and again["next_run_at"] is not None
    assert set_schedule(store, settings, **where, course_id="102", mode=None, actor="admin") is None
    assert get_schedule(store, **where, course_id="102") is None
    with pytest.raises(Invalid, match="use nightly .* or manual"):
        set_schedule(store, settings, **where, course_id="101", mode="hourly", actor="admin")
    with pytest.raises(NotFound, match="No connection"):
        set_schedule(store, settings, source_connection_id=999, destination_connection_id=ids["sis"], course_id="1",
                     mode="manual", actor="admin")


# --- the scheduler against the emulated district ---------------------------------------------------------


def _ids(store: Store) -> tuple[int, int]:
    refs = {ref.name: ref.id for ref in connection_refs(store)}
    return refs["lms"], refs["sis"]


def _courses(district: District) -> list[str]:
    return sorted(str(c) for c in district.canvas.state["courses"])


def _runs_of(store: Store, course: str | None = None) -> list[dict[str, object]]:
    with store.engine.connect() as db:
        rows = [dict(r._mapping) for r in db.execute(sa.select(runs_table).order_by(runs_table.c.started_at))]
    return [r for r in rows if course is None or r["scope"].get("course_id") == course]  # type: ignore[union-attr]


def _nightly_due(store: Store, settings: Settings, course: str, *, mode: str = "nightly") -> dict[str, object]:
    source, destination = _ids(store)
    schedule = set_schedule(store, settings, source_connection_id=source, destination_connection_id=destination,
                            course_id=course, mode=mode, actor="ms.rivera")
    assert schedule is not None
    if mode == "nightly":  # the server was down when its night came
        schedule_store.set_next_run(store, schedule["id"], datetime.now(UTC) - timedelta(hours=20))
    return schedule


def test_a_restarted_scheduler_runs_the_missed_night_and_moves_to_the_next(store: Store, settings: Settings,
                                                                           district: District) -> None:
    connect(store, settings, district)
    course, manual_course = _courses(district)[:2]
    schedule = _nightly_due(store, settings, course)
    _nightly_due(store, settings, manual_course, mode="manual")
    scores_before = len(district.powerschool.state["scores"])
    now = datetime.now(UTC)

    async def restart() -> EmbeddedScheduler:
        scheduler = EmbeddedScheduler(store, settings, interval=0.2, clock=lambda: now)  # a new process: nothing in memory
        await scheduler.start()
        try:
            await scheduler.wait_ticks(2, timeout=120)
        finally:
            await scheduler.stop()
        assert not scheduler.running
        return scheduler

    scheduler = asyncio.run(restart())
    made = _runs_of(store)
    assert len(made) == 1 and scheduler.run_ids == [made[0]["id"]]
    run = made[0]
    assert (run["trigger"], run["actor"], run["scope"]) == ("schedule", "schedule:nightly", {"course_id": course})
    assert run["status"] in ("succeeded", "completed_with_errors") and run["counts"]["created"] > 0  # type: ignore[index]
    assert district.powerschool.writes and len(district.powerschool.state["scores"]) > scores_before
    with store.engine.connect() as db:
        audited = db.execute(sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.run_id == run["id"]))
        assert audited.scalar_one() > 0

    after = get_schedule(store, source_connection_id=schedule["source_connection_id"],  # type: ignore[arg-type]
                         destination_connection_id=schedule["destination_connection_id"],  # type: ignore[arg-type]
                         course_id=course)
    assert after is not None and after["last_run_id"] == run["id"] and after["last_run_at"] is not None
    key = course_key(after["source_connection_id"], after["destination_connection_id"], course)
    assert after["next_run_at"] == next_nightly(now, "01:00", "05:00", "America/Chicago", key=key)
    local = after["next_run_at"].astimezone(CHICAGO)
    assert now < after["next_run_at"] < now + timedelta(hours=30) and time(1) <= local.time() < time(5)
    assert not _runs_of(store, manual_course)  # manual only: the scheduler never runs it


def test_a_manual_course_is_never_run_by_the_scheduler(store: Store, settings: Settings, district: District) -> None:
    connect(store, settings, district)
    course = _courses(district)[0]
    schedule = _nightly_due(store, settings, course, mode="manual")
    schedule_store.set_next_run(store, int(schedule["id"]), datetime.now(UTC) - timedelta(days=1))  # even if it said so
    assert asyncio.run(run_due(store, settings)) == []
    assert asyncio.run(run_due(store, settings, now=datetime.now(UTC) + timedelta(days=3))) == []
    assert _runs_of(store) == [] and not district.powerschool.writes


def test_two_schedulers_at_once_run_a_due_course_once(store: Store, settings: Settings, district: District) -> None:
    connect(store, settings, district)
    course = _courses(district)[0]
    _nightly_due(store, settings, course)

    async def both() -> list[str]:
        first, second = EmbeddedScheduler(store, settings, interval=0.1), EmbeddedScheduler(store, settings, interval=0.1)
        await asyncio.gather(first.start(), second.start())
        try:
            await asyncio.gather(first.wait_ticks(3, timeout=120), second.wait_ticks(3, timeout=120))
        finally:
            await asyncio.gather(first.stop(), second.stop())
        return first.run_ids + second.run_ids

    made = asyncio.run(both())
    assert len(made) == 1 and [r["id"] for r in _runs_of(store, course)] == made


def test_two_processes_ticking_at_once_run_a_due_course_once(store: Store, settings: Settings,
                                                             district: District) -> None:
    """Each "process" has its own engine and event loop; they claim the same due row at the same moment."""
    connect(store, settings, district)
    course = _courses(district)[0]
    _nightly_due(store, settings, course)
    url = store.engine.url.render_as_string(hide_password=False)
    gate, made, failures = threading.Barrier(2), [], []

    def process() -> None:
        own = Store(make_engine(url))
        try:
            gate.wait(timeout=30)
            made.extend(asyncio.run(run_due(own, settings)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=process) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not failures and len(made) == 1
    assert [r["id"] for r in _runs_of(store, course)] == made


def test_a_busy_course_waits_for_the_next_night(store: Store, settings: Settings, district: District) -> None:
    connect(store, settings, district)
    course = _courses(district)[0]
    schedule = _nightly_due(store, settings, course)
    source, destination = _ids(store)
    held = take(store, f"course:{source}:{destination}:{course}", actor="ms.rivera", run_id=None, ttl=60)
    now = datetime.now(UTC)
    try:
        with capture_logs() as logs:
            assert asyncio.run(run_due(store, settings, now=now)) == []
    finally:
        release(store, held.lease)  # type: ignore[union-attr]
    assert any(entry["event"] == "schedule_busy" for entry in logs)
    assert _runs_of(store) == []
    after = get_schedule(store, source_connection_id=source, destination_connection_id=destination, course_id=course)
    assert after is not None and after["last_run_id"] is None and after["id"] == schedule["id"]
    assert after["next_run_at"] == next_nightly(now, "01:00", "05:00", "America/Chicago",
                                                key=course_key(source, destination, course))


def test_a_schedule_that_cannot_run_does_not_stop_the_others(store: Store, settings: Settings, tmp_path: Path,
                                                             district: District) -> None:
    connect(store, settings, district)
    good, other = _courses(district)[:2]
    _nightly_due(store, settings, good)
    # A source whose credentials were saved with another key: it cannot be opened with this one.
    stranger = save_connection(store, load_key(Settings(data_dir=tmp_path / "elsewhere")), name="old-lms", kind="canvas",
                               base_url=district.canvas.url, credentials={"token": district.credentials.canvas_token})
    _, destination = _ids(store)
    broken = set_schedule(store, settings, source_connection_id=stranger.id, destination_connection_id=destination,
                          course_id=other, mode="nightly", actor="admin")
    assert broken is not None
    schedule_store.set_next_run(store, broken["id"], datetime.now(UTC) - timedelta(hours=21))  # due first

    with capture_logs() as logs:
        made = asyncio.run(run_due(store, settings))
    by_course = {r["scope"]["course_id"]: r for r in _runs_of(store)}  # type: ignore[index]
    assert set(made) == {r["id"] for r in by_course.values()} and set(by_course) == {good, other}
    assert by_course[other]["status"] == "failed" and "cannot be decrypted" in str(by_course[other]["failure"])
    assert by_course[good]["status"] in ("succeeded", "completed_with_errors")
    assert {e["event"] for e in logs} >= {"schedule_ran"}
    student_names = {s["name"] for s in district.canvas.state.get("users", {}).values() if isinstance(s, dict)
                     and "name" in s}
    assert not any(name in repr(logs) for name in student_names)  # what the scheduler logs names no student
