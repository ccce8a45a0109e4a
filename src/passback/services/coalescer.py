"""From Live Events to syncs: a burst of changes in a course becomes one sync of that course.

A teacher grading a hundred papers in the gradebook makes a hundred ``grade_change``
events in a few seconds; syncing the course a hundred times would be wasteful and would
queue ninety-nine runs behind a lease. The :class:`Coalescer` waits, per (source
connection, course), until the course has been quiet for ``quiet_seconds``
(``PASSBACK_LIVE_EVENTS_QUIET_SECONDS``, 2) or its first pending event has waited
``max_wait_seconds`` (``PASSBACK_LIVE_EVENTS_MAX_WAIT_SECONDS``, 10), whichever comes
first, then hands the burst to ``dispatch(source_connection_id, course_id, event_ids)``
once, the ids ordered by ``event_time``.

It holds nothing that matters in memory: the events are in the store (``live_events``),
when they arrived too, so a restarted server dispatches what the last one left pending. A
burst is claimed in the store before it is dispatched, so two coalescers sharing a store
do not dispatch it twice. After the dispatch returns the events are marked processed with
what it returned; if it raises they stay pending and the course is tried again on a later
tick, after a back-off that doubles per failure (from the quiet window, at most
:data:`MAX_BACKOFF_SECONDS`), so a destination that is down is not asked again twice a second.

:func:`sync_dispatch` is the dispatch of one machine: it runs a sync of the course to the
destination the district routes its source to (``trigger="event"``), through the runs
service, as the scheduler does. The task engine gives its own dispatch instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from passback.errors import PassbackError
from passback.pipeline.plan import Scope
from passback.services.courses import ConnectionRef, NoRoute, destination_of
from passback.services.courseware import is_manual
from passback.services.runs import sync_to_destinations
from passback.services.schedules import is_manual_only
from passback.settings import Settings
from passback.store import live_events as repo
from passback.store.db import Store
from passback.store.history import FAILED

log = structlog.get_logger("passback.coalescer")

Dispatch = Callable[[int, str, list[int]], Awaitable[Any] | Any]
TRIGGER, ACTOR = "event", "canvas:live-events"
CLAIM_SECONDS = 600.0  # a burst being dispatched is held this long; a claim whose holder died is free after it
MAX_BACKOFF_SECONDS = 300.0
BUSY_WAIT_SECONDS = 10.0  # a dispatch waits this long for another run of the course before it counts as failed


class DispatchFailed(PassbackError):
    """The course's sync did not run, or failed: its events stay pending for a later tick."""


@dataclass(frozen=True)
class Dispatched:
    """One dispatch: which course, which events (by event time), and what came of it."""

    source_connection_id: int
    course_id: str
    event_ids: tuple[int, ...]
    outcome: str | None  # what the dispatch returned, when it succeeded
    error: str | None = None  # the exception's class, when it raised


def _outcome(result: Any) -> str:
    return result if isinstance(result, str) and result else "dispatched"


class Coalescer:
    """Ticks every ``interval`` seconds: each course quiet (or waiting) long enough is dispatched once.

    ``dispatch`` defaults to :func:`sync_dispatch`; ``clock`` gives "now" (aware, UTC);
    ``dispatched`` keeps every dispatch made, newest last (tests, a status page).
    """

    def __init__(self, store: Store, settings: Settings, dispatch: Dispatch | None = None, *,
                 quiet_seconds: float | None = None, max_wait_seconds: float | None = None,
                 interval: float | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.settings = settings
        self.dispatch = dispatch or sync_dispatch(store, settings)
        self.quiet = settings.live_events_quiet_seconds if quiet_seconds is None else quiet_seconds
        self.max_wait = settings.live_events_max_wait_seconds if max_wait_seconds is None else max_wait_seconds
        if self.quiet < 0 or self.max_wait <= 0:
            raise ValueError("The quiet window must be 0 or more seconds and the longest wait more than 0.")
        self.interval = interval if interval is not None else min(0.5, max(0.05, self.quiet / 4))
        self.clock = clock or (lambda: datetime.now(UTC))
        self.dispatched: list[Dispatched] = []
        self._in_flight: dict[tuple[int, str], asyncio.Task[Dispatched | None]] = {}
        self._failures: dict[tuple[int, str], tuple[int, datetime]] = {}  # failures so far, and when to try again
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start ticking in the background; a second start does nothing."""
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name="passback-coalescer")
            log.info("coalescer_started", quiet_seconds=self.quiet, max_wait_seconds=self.max_wait)

    async def stop(self) -> None:
        """Stop ticking; a dispatch in progress is cancelled and its events stay pending (the claim is let go)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for running in list(self._in_flight.values()):
            running.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        log.info("coalescer_stopped", dispatched=len(self.dispatched))

    def due(self, course: repo.PendingCourse, now: datetime) -> bool:
        """Is the course's burst over (quiet long enough), or has its first event waited long enough?"""
        key = (course.source_connection_id, course.course_id)
        if key in self._in_flight:
            return False
        failed = self._failures.get(key)
        if failed is not None and now < failed[1]:
            return False
        quiet = (now - course.last_received_at).total_seconds() >= self.quiet
        waited = (now - course.first_received_at).total_seconds() >= self.max_wait
        return quiet or waited

    async def tick(self, *, wait: bool = True) -> list[Dispatched]:
        """Dispatch every course that is due; with ``wait`` (tests), return once those dispatches ended.

        Never raises: the loop must outlive a store that is briefly down.
        """
        try:
            courses = await asyncio.to_thread(repo.pending_courses, self.store)
        except Exception as exc:  # noqa: BLE001 - the store is down, say: log it and look again next tick
            log.error("coalescer_tick_failed", error=exc.__class__.__name__)
            return []
        now = self.clock()
        started = []
        for course in courses:
            if self.due(course, now):
                key = (course.source_connection_id, course.course_id)
                task = asyncio.create_task(self._dispatch(*key), name=f"passback-dispatch-{key[0]}-{key[1]}")
                self._in_flight[key] = task
                task.add_done_callback(lambda _t, key=key: self._in_flight.pop(key, None))
                started.append(task)
        if not wait or not started:
            return []
        return [done for done in await asyncio.gather(*started) if done is not None]

    async def _dispatch(self, source_connection_id: int, course_id: str) -> Dispatched | None:
        key = (source_connection_id, course_id)
        events = await asyncio.to_thread(repo.claim, self.store, source_connection_id, course_id, ttl=CLAIM_SECONDS)
        if not events:
            return None  # another coalescer holds them
        ids = [event.id for event in events]  # by event time: the order they happened in Canvas
        where = {"source_connection_id": source_connection_id, "course_id": course_id, "events": len(ids)}
        try:
            result = self.dispatch(source_connection_id, course_id, ids)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            repo.release(self.store, ids)  # stopping: the next process picks them up at once
            raise
        except Exception as exc:  # noqa: BLE001 - one course must not stop the others; no message: it may hold data
            await asyncio.to_thread(repo.release, self.store, ids)
            retry_at = self._back_off(key)
            log.warning("live_events_dispatch_failed", error=exc.__class__.__name__, retry_at=retry_at.isoformat(),
                        **where)
            done = Dispatched(source_connection_id, course_id, tuple(ids), None, exc.__class__.__name__)
        else:
            self._failures.pop(key, None)
            outcome = _outcome(result)
            await asyncio.to_thread(repo.mark_processed, self.store, ids, outcome)
            log.info("live_events_dispatched", outcome=outcome, **where)
            done = Dispatched(source_connection_id, course_id, tuple(ids), outcome)
        self.dispatched.append(done)
        return done

    def _back_off(self, key: tuple[int, str]) -> datetime:
        count = self._failures.get(key, (0, self.clock()))[0] + 1
        delay = min(MAX_BACKOFF_SECONDS, max(self.quiet, self.interval) * 2 ** (count - 1))
        retry_at = self.clock() + timedelta(seconds=delay)
        self._failures[key] = (count, retry_at)
        return retry_at

    async def _loop(self) -> None:
        while True:
            await self.tick(wait=False)
            await asyncio.sleep(self.interval)


async def course_destination(store: Store, settings: Settings, source_connection_id: int,
                             course_id: str) -> ConnectionRef | str:
    """Where a burst's course syncs to, or why it does not: ``no-route``; ``manual-only`` (its schedule
    says a person asks); ``manual-mode`` (a courseware course in manual passback). Both dispatches ask this."""
    try:
        destination = await asyncio.to_thread(destination_of, store, settings, source_connection_id)
    except NoRoute:
        log.warning("live_events_no_route", source_connection_id=source_connection_id, course_id=course_id)
        return "no-route"
    if await asyncio.to_thread(is_manual_only, store, source_connection_id=source_connection_id,
                               course_id=course_id, destination_connection_id=destination.id):
        return "manual-only"
    if await is_manual(store, settings, source_connection_id, course_id):
        return "manual-mode"  # a courseware course in manual passback: sent only when a person asks
    return destination


def sync_dispatch(store: Store, settings: Settings) -> Dispatch:
    """The dispatch of one machine: sync the course to its routed destination now, as trigger ``event``.

    A course :func:`course_destination` says is not to be synced is not; its events are
    done with all the same. A sync that could not start (another run held the course past
    :data:`BUSY_WAIT_SECONDS`) or that failed raises :class:`DispatchFailed`, so the events
    are tried again.
    """

    async def dispatch(source_connection_id: int, course_id: str, event_ids: list[int]) -> str:
        destination = await course_destination(store, settings, source_connection_id, course_id)
        if isinstance(destination, str):
            return destination
        results = await sync_to_destinations(store, settings, source_connection_id, [destination.id],
                                             [Scope(course_id=course_id)], trigger=TRIGGER, actor=ACTOR,
                                             wait_seconds=BUSY_WAIT_SECONDS)
        result = results[0]
        if result.run_id is None:
            raise DispatchFailed(f"The sync of course {course_id} did not start: {result.failure}")
        if result.status == FAILED:
            raise DispatchFailed(f"Run {result.run_id} of course {course_id} failed; `passback runs show "
                                 f"{result.run_id}` says why.")
        return f"run {result.run_id} {result.status}"

    return dispatch
