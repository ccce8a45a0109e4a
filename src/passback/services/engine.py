"""What the task engine asks of the service layer: queue a district's courses, carry out a queued run.

The engine's tasks carry a run id only; everything else is in the store, so any worker
can take any task, a task delivered twice does no harm, and a worker killed mid-run
loses nothing:

* a queued run is executed (:func:`passback.services.runs.execute`, what the CLI's runs
  go through), under the course's lease, which holds across workers and machines;
* a run another worker is carrying out is looked at again later (the task is retried);
* a run whose worker died (its lease expired) is ended as interrupted and continued by a
  new run with the same request, whose id is derived from the dead one's, so two
  deliveries of the task continue it once. What the dead run wrote is in the identity
  map, so the new run neither loses nor repeats it;
* a finished run is left as it is.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog

from passback.errors import Conflict, NotFound
from passback.pipeline.plan import Scope
from passback.pipeline.run import RunRequest, RunScope
from passback.services.coalescer import ACTOR as EVENT_ACTOR
from passback.services.coalescer import TRIGGER as EVENT_TRIGGER
from passback.services.coalescer import Dispatch, course_destination
from passback.connectors.registry import preload
from passback.services.connections import Route, open_route
from passback.services.leases import Busy, interrupt_dead_runs
from passback.services.runs import INTERRUPTED, execute, submit
from passback.settings import Settings
from passback.store.db import Store
from passback.store.history import QUEUED, RUNNING, get_run, queued_since, run_request

log = structlog.get_logger("passback.engine")
CONTINUED = uuid.UUID("5f1b2a0e-7c39-4d8e-9a51-3e7c2b9d4f10")  # names the run that continues a dead one


@dataclass(frozen=True)
class Attempt:
    """What became of a task's run: its id (the continuing run's, when the first died) and status.

    ``retry_in`` asks the engine to deliver the task again after that many seconds.
    """

    run_id: str
    status: str
    retry_in: float | None = None


def continuation_id(run_id: str) -> str:
    return str(uuid.uuid5(CONTINUED, run_id))


def continue_run(store: Store, run_id: str, request: RunRequest) -> str:
    """The run continuing a dead one: submitted once, whoever asks first."""
    new_id = continuation_id(run_id)
    if run_request(store, new_id) is not None:
        return new_id
    try:
        submit(store, request.model_copy(update={"trigger": "continued"}), run_id=new_id)
    except sa.exc.IntegrityError:  # another delivery of the task submitted it a moment ago
        pass
    else:
        log.info("run_continued", run_id=run_id, continued_by=new_id)
    return new_id


async def carry_out(store: Store, settings: Settings, run_id: str, *, busy_retry: float = 2.0) -> Attempt:
    """Bring a queued run to an end, whatever befell it before this delivery of its task."""
    for _ in range(10):  # a chain of continuations is short; the bound keeps a bug from spinning
        found = await asyncio.to_thread(run_request, store, run_id)
        if found is None:
            raise NotFound(f"No run {run_id}.")
        _, raw, status = found
        if status == QUEUED:
            try:
                result = await execute(store, settings, run_id)
            except Busy:  # another run holds the course: this one waits its turn
                return Attempt(run_id, QUEUED, retry_in=busy_retry)
            except Conflict:  # another delivery claimed it between our read and our claim
                continue
            return Attempt(run_id, result.status)
        if status == RUNNING:
            dead = await asyncio.to_thread(interrupt_dead_runs, store, settings.lease_seconds)
            if run_id not in dead:  # its worker lives (or its lease has not expired yet): look again later
                return Attempt(run_id, RUNNING, retry_in=max(1.0, settings.lease_seconds / 3))
            status = INTERRUPTED
        if status == INTERRUPTED and raw is not None:
            run_id = await asyncio.to_thread(continue_run, store, run_id, RunRequest.model_validate(raw))
            continue
        return Attempt(run_id, status)
    raise Conflict(f"Run {run_id} was continued more than ten times; see passback runs.")


async def queue_courses(store: Store, settings: Settings, route: Route, scopes: list[Scope] | None = None, *,
                        all_courses: bool = False, trigger: str = "manual", actor: str = "cli",
                        full_read: bool = False, dispatch: Callable[[str], None]) -> list[str]:
    """A district sync fanned out: one queued run per course, each handed to ``dispatch`` (the engine's queue)."""
    async with open_route(store, settings, route) as opened:
        if all_courses:
            scopes = [Scope(course_id=str(c)) for c in await opened.source.list_course_ids()]
        pairing = opened.pairing
    run_ids = []
    for scope in scopes or []:
        request = RunRequest(pipeline="gradebook", source_connection_id=pairing.source_connection_id,
                             destination_connection_id=pairing.destination_connection_id,
                             scope=RunScope(course_id=scope.course_id, assignment_id=scope.assignment_id,
                                            student_id=scope.student_id),
                             trigger=trigger, actor=actor, full_read=full_read)
        run_id = await asyncio.to_thread(submit, store, request)
        dispatch(run_id)
        run_ids.append(run_id)
    return run_ids


FINISHED = frozenset({"succeeded", "completed_with_errors", "failed"})


def _follow(store: Store, run_ids: list[str]) -> list[dict[str, Any]]:
    """Each run, or the run continuing it when it was interrupted: what people want to see of a queued run."""
    shown = []
    for run_id in run_ids:
        row = get_run(store, run_id)
        for _ in range(10):
            if row is None or row["status"] != INTERRUPTED:
                break
            row = get_run(store, continuation_id(row["id"])) or row
            if row["status"] == INTERRUPTED and get_run(store, continuation_id(row["id"])) is None:
                break
        shown.append(row or {"id": run_id, "status": "missing", "counts": {}})
    return shown


async def wait_for_runs(store: Store, run_ids: list[str], *, timeout: float, poll: float = 0.5) -> list[dict[str, Any]]:
    """The queued runs as they stand when all ended (an interrupted one by its continuation) or the time is up."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await asyncio.to_thread(_follow, store, run_ids)
        if all(r["status"] in FINISHED for r in rows) or asyncio.get_running_loop().time() >= deadline:
            return rows
        await asyncio.sleep(poll)


def requeue_stale(store: Store, settings: Settings, dispatch: Callable[[str], None], *,
                  older_than: float | None = None) -> list[str]:
    """Hand the workers again every run queued too long, and every run whose worker died.

    A broker that keeps nothing on disk (Redis, by default) forgets its queue when it
    restarts; the store does not. A run handed twice is carried out once (see above).
    """
    older_than = settings.task_visibility_seconds if older_than is None else older_than
    now = datetime.now(UTC)
    stale = queued_since(store, now - timedelta(seconds=older_than))
    stale += interrupt_dead_runs(store, settings.lease_seconds)
    for run_id in stale:
        dispatch(run_id)
    if stale:
        log.info("runs_requeued", count=len(stale))
    return stale


def queued_dispatch(store: Store, settings: Settings, enqueue: Callable[[str], None]) -> Dispatch:
    """The Live Events dispatch of a scaled district: each burst's course becomes a queued run for the workers.

    As :func:`passback.services.coalescer.sync_dispatch` decides (:func:`~passback.services.coalescer.course_destination`),
    but the run goes to the task engine instead of running in the web server.
    """

    async def dispatch(source_connection_id: int, course_id: str, event_ids: list[int]) -> str:
        destination = await course_destination(store, settings, source_connection_id, course_id)
        if isinstance(destination, str):
            return destination
        request = RunRequest(pipeline="gradebook", source_connection_id=source_connection_id,
                             destination_connection_id=destination.id, scope=RunScope(course_id=course_id),
                             trigger=EVENT_TRIGGER, actor=EVENT_ACTOR)
        run_id = await asyncio.to_thread(submit, store, request)
        enqueue(run_id)
        return f"queued run {run_id}"

    return dispatch


def warm_up() -> None:
    """What a worker does before its first task: import every connector, so no run pays for it on its clock."""
    preload()
