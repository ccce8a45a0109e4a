"""When each course syncs without a person asking: nightly (opted in), or manual only.

A course (on one route: source connection, destination connection) has no schedule
until someone sets one:

* ``nightly``: synced once a night inside the district's window. Each course has its
  own moment in the window, picked by a stable hash of its key, so two hundred courses
  spread over the window instead of all starting at its first second.
* ``manual``: nothing is sent unless a person asks. The scheduler never runs it, and
  any other automatic trigger asks :func:`is_manual_only` first.

:func:`run_due` is one tick of a scheduler: it claims each due nightly schedule once
(in the store, so two schedulers never both run one), runs it through the runs service
and moves on. The scheduler itself (:mod:`passback.services.scheduler`) holds nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from passback.errors import Invalid, PassbackError
from passback.pipeline.run import RunRequest, RunScope
from passback.services.district import DistrictSettings, get_district
from passback.services.courseware import is_manual
from passback.services.leases import Busy
from passback.services.runs import run, submit
from passback.settings import Settings
from passback.store import schedules as repo
from passback.store.db import Store
from passback.store.schedules import MANUAL, MODES, NIGHTLY

log = structlog.get_logger("passback.schedules")

TRIGGER = "schedule"
ACTOR = "schedule:nightly"

__all__ = ["MANUAL", "MODES", "NIGHTLY", "get_schedule", "is_manual_only", "list_schedules", "next_nightly",
           "reschedule_nightly", "run_due", "set_schedule", "spread"]


# --- when: the next moment in the nightly window -------------------------------------------------------


def _clock(value: str | time) -> time:
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0, tzinfo=None)
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except ValueError as exc:
        raise Invalid(f"{value!r} is not a time of day as HH:MM (e.g. 01:00).") from exc


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The wall-clock time on that day in UTC. A time the clocks skip (02:30 on the spring-forward night)
    is read with the offset before the change, i.e. just after the gap; a time they show twice, the first."""
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def window_on(day: date, window_start: str | time, window_end: str | time, tz: str | ZoneInfo) -> tuple[datetime, datetime]:
    """The window that opens on ``day`` (local), as UTC instants; one ending at or before its start ends the next day."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    start, end = _clock(window_start), _clock(window_end)
    if start == end:
        raise Invalid(f"The nightly window starts and ends at {start:%H:%M}; give it a length (e.g. 01:00 to 05:00).")
    closes_on = day + timedelta(days=1) if end < start else day
    return _instant(day, start, zone), _instant(closes_on, end, zone)


def spread(key: str) -> float:
    """Where in the window (0 <= share < 1) a course starts: stable across processes, releases and restarts."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def next_nightly(after: datetime, window_start: str | time, window_end: str | time, tz: str | ZoneInfo, *,
                 key: str = "") -> datetime:
    """The next moment strictly after ``after`` inside the nightly window, for the course ``key``; in UTC.

    The course's moment is the same share of the window each night (:func:`spread`),
    measured in real time, so on a night whose window the clocks shorten or lengthen
    (daylight saving) it is still inside the window. A naive ``after`` is taken as UTC.
    """
    after = after.replace(tzinfo=UTC) if after.tzinfo is None else after.astimezone(UTC)
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    share = spread(key)
    today = after.astimezone(zone).date()
    for days in range(-1, 3):  # a window that opened yesterday may still be open; then tonight's, tomorrow's
        opens, closes = window_on(today + timedelta(days=days), window_start, window_end, zone)
        length = max(0.0, (closes - opens).total_seconds())  # none: the clocks skipped the whole window tonight
        moment = opens + timedelta(seconds=int(length * share))
        if moment > after:
            return moment
    raise AssertionError("a window opens every day")  # pragma: no cover


def course_key(source_connection_id: int, destination_connection_id: int, course_id: str) -> str:
    return f"{source_connection_id}:{destination_connection_id}:{course_id}"


def _next_for(district: DistrictSettings, key: str, after: datetime) -> datetime:
    return next_nightly(after, district.nightly_window_start, district.nightly_window_end, district.zone, key=key)


# --- what: a course's schedule ---------------------------------------------------------------------


def set_schedule(store: Store, settings: Settings, *, source_connection_id: int, destination_connection_id: int,
                 course_id: str, mode: str | None, actor: str, now: datetime | None = None) -> dict[str, Any] | None:
    """Set the course's mode on this route: ``nightly``, ``manual``, or ``None`` (no schedule; the row goes).

    A nightly course's first run is its moment in the next window after ``now``.
    """
    course_id = str(course_id)
    if mode is None:
        removed = repo.delete_schedule(store, source_connection_id, destination_connection_id, course_id)
        log.info("schedule_removed", source_connection_id=source_connection_id, course_id=course_id, removed=removed,
                 actor=actor)
        return None
    if mode not in MODES:
        raise Invalid(f"The schedule mode {mode!r} is not known; use nightly (synced once a night in the district's "
                      "window) or manual (only when a person asks), or none to remove the schedule.")
    next_run_at = None
    if mode == NIGHTLY:
        key = course_key(source_connection_id, destination_connection_id, course_id)
        next_run_at = _next_for(get_district(store, settings), key, now or datetime.now(UTC))
    saved = repo.save_schedule(store, source_connection_id=source_connection_id,
                               destination_connection_id=destination_connection_id, course_id=course_id, mode=mode,
                               next_run_at=next_run_at, actor=actor)
    log.info("schedule_set", source_connection_id=source_connection_id, course_id=course_id, mode=mode,
             next_run_at=next_run_at, actor=actor)
    return saved


def get_schedule(store: Store, *, source_connection_id: int, destination_connection_id: int,
                 course_id: str) -> dict[str, Any] | None:
    """The course's schedule on this route, or None (not scheduled)."""
    return repo.get_schedule_row(store, source_connection_id, destination_connection_id, str(course_id))


def list_schedules(store: Store, *, mode: str | None = None) -> list[dict[str, Any]]:
    """Every schedule (of one mode), by route and course."""
    return repo.list_schedule_rows(store, mode=mode)


def is_manual_only(store: Store, *, source_connection_id: int, course_id: str,
                   destination_connection_id: int | None = None) -> bool:
    """Must an automatic trigger leave this course alone? Yes when it is ``manual`` on the route
    (on any route from this source, when no destination is named)."""
    if destination_connection_id is not None:
        found = repo.get_schedule_row(store, source_connection_id, destination_connection_id, str(course_id))
        return found is not None and found["mode"] == MANUAL
    rows = repo.list_schedule_rows(store, source_connection_id=source_connection_id, course_id=str(course_id))
    return any(row["mode"] == MANUAL for row in rows)


def reschedule_nightly(store: Store, district: DistrictSettings, *, now: datetime | None = None) -> int:
    """Move every nightly schedule's next run into the (changed) window; how many moved."""
    now = now or datetime.now(UTC)
    moved = 0
    for row in repo.list_schedule_rows(store, mode=NIGHTLY):
        key = course_key(row["source_connection_id"], row["destination_connection_id"], row["course_id"])
        repo.set_next_run(store, row["id"], _next_for(district, key, now))
        moved += 1
    log.info("schedules_moved", count=moved, window=f"{district.nightly_window_start}-{district.nightly_window_end}",
             time_zone=district.time_zone)
    return moved


# --- the tick: run what is due ---------------------------------------------------------------------


async def run_due(store: Store, settings: Settings, *, now: datetime | None = None,
                  dispatch: Callable[[str], None] | None = None) -> list[str]:
    """Claim each due nightly schedule once and run it; the ids of the runs made.

    ``dispatch`` hands each run to the task engine as a queued run instead (the engine's
    beat calls this in scaled mode, so the night's courses spread over the workers).

    A course another run holds (Busy) is left for the next night; a schedule that
    cannot run (its connections do not open, the store refuses) is logged and the next
    one goes on. A run that fails inside is a failed run in the history, with its reason.
    """
    now = datetime.now(UTC) if now is None else (now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC))
    district = await asyncio.to_thread(get_district, store, settings)
    run_ids: list[str] = []
    for row in await asyncio.to_thread(repo.due, store, now):
        key = course_key(row["source_connection_id"], row["destination_connection_id"], row["course_id"])
        was = row["next_run_at"]
        then = _next_for(district, key, max(now, was))
        if not await asyncio.to_thread(repo.claim, store, row["id"], was=was, then=then):
            continue  # another scheduler claimed it first, and runs it
        run_id = await _run_one(store, settings, row, then, dispatch)
        if run_id is not None:
            run_ids.append(run_id)
    return run_ids


async def _manual_passback(store: Store, settings: Settings, row: dict[str, Any]) -> bool:
    """Does the course itself say its scores go only when a person asks (a courseware course in manual mode)?

    A source that cannot be asked is not manual here: the run then fails with the reason, in the history.
    """
    try:
        return await is_manual(store, settings, row["source_connection_id"], row["course_id"])
    except Exception:  # noqa: BLE001 - the run that follows says what is wrong, where people read it
        return False


async def _run_one(store: Store, settings: Settings, row: dict[str, Any], then: datetime,
                   dispatch: Callable[[str], None] | None = None) -> str | None:
    where = {"schedule_id": row["id"], "source_connection_id": row["source_connection_id"],
             "destination_connection_id": row["destination_connection_id"], "course_id": row["course_id"]}
    request = RunRequest(pipeline="gradebook", source_connection_id=row["source_connection_id"],
                         destination_connection_id=row["destination_connection_id"],
                         scope=RunScope(course_id=row["course_id"]), trigger=TRIGGER, actor=ACTOR)
    if await _manual_passback(store, settings, row):
        log.info("schedule_manual_passback", next_run_at=then, **where)  # seed 002: only when a person asks
        return None
    if dispatch is not None:
        queued = await asyncio.to_thread(submit, store, request)
        dispatch(queued)
        await asyncio.to_thread(repo.record_run, store, row["id"], run_id=queued, at=datetime.now(UTC))
        log.info("schedule_queued", run_id=queued, next_run_at=then, **where)
        return queued
    try:
        result = await run(store, settings, request)
    except Busy:  # a person's run has the course now; tonight's is theirs, the schedule tries next night
        log.info("schedule_busy", next_run_at=then, **where)
        return None
    except PassbackError as exc:  # our own errors name the system and the fix, never a student
        log.warning("schedule_not_run", error=exc.__class__.__name__, reason=str(exc), next_run_at=then, **where)
        return None
    except Exception as exc:  # noqa: BLE001 - one course must not stop the night's others; no message: it may hold data
        log.error("schedule_not_run", error=exc.__class__.__name__, next_run_at=then, **where)
        return None
    if result.run_id is None:
        return None
    await asyncio.to_thread(repo.record_run, store, row["id"], run_id=result.run_id, at=datetime.now(UTC))
    # A failed run's reason is in the history (passback runs show ID); the log says only that it failed.
    (log.warning if result.failure else log.info)("schedule_ran", run_id=result.run_id, status=result.status,
                                                  next_run_at=then, **where)
    return result.run_id
