"""The runs service: submit a run, execute it, and sync many courses in this process.

Every run goes through here, whichever pipeline and whoever asks: ``submit`` stores a
queued run (its request is a plain value), ``execute`` claims it once and carries it out
in one run context: a request meter, the phase clock, one recorder, and one failure
policy (any exception ends the run as failed, with its reason; what was recorded before
stays; an interrupted process leaves it "interrupted", never "running"). The CLI calls
both inline; the REST API and the task engine call the same two functions.

A dry run is never stored: :func:`preview` runs the same pipeline with a recorder that
writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from passback.connectors.http import request_meter
from passback.errors import Conflict, NotFound, PassbackError
from passback.pipeline.edfi_sending import BATCH
from passback.pipeline.gradebook import GradebookPipeline
from passback.pipeline.plan import Plan, Scope
from passback.pipeline.record import Recorder
from passback.pipeline.run import (
    Pipeline,
    PipelineOutcome,
    Progress,
    RunContext,
    RunOptions,
    RunRequest,
    RunResult,
    RunScope,
)
from passback.pipeline.statereport import StateReportPipeline
from passback.services.connections import Route, open_route, open_state_reporting
from passback.services.district import get_district
from passback.services.leases import Busy, holding, interrupt_dead_runs
from passback.settings import Settings
from passback.store.db import Store
from passback.store.history import FAILED, MULTI, claim_run, empty_counts, finish_run, run_request, submit_run

log = structlog.get_logger("passback.runs")

PIPELINES: dict[str, Pipeline] = {p.name: p for p in (GradebookPipeline(), StateReportPipeline())}
# Recorded in batches (Ed-Fi answers in batches anyway): a transaction per assignment cost a district sync
# more than its reads. Safe to lose on a crash: an assignment's create is announced in the store before it
# is sent (found again, never made twice) and a score write is an upsert (sent again, the same value).
FLUSH_EVERY = {"gradebook": 2000, "statereport": BATCH}
FLUSH_SECONDS = {"gradebook": 0.5, "statereport": None}  # and at least this often, so a slow run shows its progress
INTERRUPTED = "interrupted"


def process_name() -> str:
    """Which process carried a run out (a worker, a server, the CLI): read at the time, a forked worker has its own."""
    return f"{socket.gethostname()}:{os.getpid()}"
NOT_STARTED = "not_started"  # another run held the scope


def run_options(settings: Settings, store: Store | None = None) -> RunOptions:
    """What a run obeys: the district's title limit and closed-term block as an admin saved them in
    the store (read afresh, so a change holds from the next run in every process), else the environment's."""
    if store is None:
        return RunOptions(concurrency=settings.concurrency, district_title_limit=settings.district_title_limit,
                          block_closed_terms=settings.block_closed_terms, reconcile_days=settings.reconcile_days)
    district = get_district(store, settings)
    return RunOptions(concurrency=settings.concurrency, district_title_limit=district.title_limit,
                      block_closed_terms=district.block_closed_terms, reconcile_days=settings.reconcile_days)


def submit(store: Store, request: RunRequest, *, run_id: str | None = None) -> str:
    """Store the run as queued; returns its id (``run_id`` names it in advance)."""
    return submit_run(store, request.pairing, pipeline=request.pipeline, request=request.model_dump(mode="json"),
                      trigger=request.trigger, scope=request.scope_record(), actor=request.actor,
                      parent_run_id=request.parent_run_id, run_id=run_id)


async def execute(store: Store, settings: Settings, run_id: str, *, connectors: Any = None,
                  progress: Progress | None = None, on_plan: Callable[[Any], None] | None = None) -> RunResult:
    """Take the scope's lease, claim the queued run and carry it out.

    Raises :class:`~passback.services.leases.Busy` (the run stays queued) when another run
    holds the scope past the request's wait. ``connectors`` reuses connectors already open.
    """
    found = run_request(store, run_id)
    if found is None or found[1] is None:
        raise NotFound(f"No queued run {run_id}.")
    request = RunRequest.model_validate(found[1])
    await asyncio.to_thread(interrupt_dead_runs, store, settings.lease_seconds)
    async with holding(store, request, run_id=run_id, wait=request.wait_seconds, ttl=settings.lease_seconds):
        if not claim_run(store, run_id):
            raise Conflict(f"Run {run_id} is not queued (it is {found[2]}); a run is carried out once.")
        return await _carry_out(store, settings, request, run_id, connectors, progress, on_plan)


async def preview(store: Store, settings: Settings, request: RunRequest, *, connectors: Any = None,
                  on_plan: Callable[[Any], None] | None = None) -> RunResult:
    """The plan of a dry run; nothing is stored."""
    request = request.model_copy(update={"dry_run": True})
    return await _carry_out(store, settings, request, None, connectors, None, on_plan)


async def run(store: Store, settings: Settings, request: RunRequest, *, connectors: Any = None,
              progress: Progress | None = None, on_plan: Callable[[Any], None] | None = None) -> RunResult:
    """Submit and execute at once (or preview, for a dry run): what the CLI does."""
    if request.dry_run:
        return await preview(store, settings, request, connectors=connectors, on_plan=on_plan)
    await asyncio.to_thread(interrupt_dead_runs, store, settings.lease_seconds)
    async with holding(store, request, run_id=None, wait=request.wait_seconds, ttl=settings.lease_seconds) as lease:
        run_id = submit(store, request)  # only once the scope is ours: a busy scope leaves no queued run behind
        lease.attach(run_id)
        claim_run(store, run_id)
        return await _carry_out(store, settings, request, run_id, connectors, progress, on_plan)


@contextlib.asynccontextmanager
async def _opened(store: Store, settings: Settings, request: RunRequest, given: Any) -> AsyncIterator[Any]:
    if given is not None:
        yield given
    elif request.pipeline == "gradebook":
        route = Route(request.source_connection_id, request.destination_connection_id)
        async with open_route(store, settings, route) as opened:
            yield opened.connectors
    else:
        async with open_state_reporting(store, settings, request.source_connection_id,
                                        request.destination_connection_id) as (connectors, _):
            yield connectors


def describe(exc: BaseException) -> str:
    """The reason a run failed, as the history shows it: our own errors say it themselves."""
    if isinstance(exc, PassbackError):
        return str(exc)
    return f"{exc.__class__.__name__}: {exc}"


async def _carry_out(store: Store, settings: Settings, request: RunRequest, run_id: str | None, connectors: Any,
                     progress: Progress | None, on_plan: Callable[[Any], None] | None) -> RunResult:
    started = time.perf_counter()
    recorder = Recorder(store, request.pairing, run_id, flush_every=FLUSH_EVERY[request.pipeline],
                        flush_seconds=FLUSH_SECONDS[request.pipeline])
    ctx = RunContext(store=store, request=request, run_id=run_id, recorder=recorder, options=run_options(settings, store),
                     progress=progress, on_plan=on_plan)
    token = request_meter.set(ctx.meter)
    outcome, failure = PipelineOutcome(), None
    log.info("run_started", run_id=run_id, pipeline=request.pipeline, scope=request.scope_record(),
             trigger=request.trigger)
    try:
        async with _opened(store, settings, request, connectors) as opened:
            outcome = await PIPELINES[request.pipeline].run(ctx, opened)
    except Exception as exc:  # one failure policy: the run fails with its reason, nothing recorded is lost
        failure = describe(exc)
        log.info("run_failed", run_id=run_id, error=exc.__class__.__name__)
    except BaseException:  # cancelled or interrupted: recorded as such, then passed on
        _finish(store, run_id, recorder, ctx, started, outcome, None, status=INTERRUPTED)
        raise
    finally:
        request_meter.reset(token)
    return _finish(store, run_id, recorder, ctx, started, outcome, failure)


def _finish(store: Store, run_id: str | None, recorder: Recorder, ctx: RunContext, started: float,
            outcome: PipelineOutcome, failure: str | None, status: str | None = None) -> RunResult:
    try:
        recorder.flush()
    except Exception as exc:  # noqa: BLE001 - the store itself failed; say so on the run if it can be said
        failure = failure or describe(exc)
    stats = {"seconds": round(time.perf_counter() - started, 3), "requests": dict(ctx.meter), "phases": ctx.phases,
             "process": process_name()}
    stats.update(outcome.stats)
    counts = recorder.totals()
    status = status or outcome.status
    if run_id is not None:
        status = finish_run(store, run_id, counts=counts, stats=stats, failure=failure, status=status)
    else:
        status = FAILED if failure else (status or "dry_run")
    log.info("run_finished", run_id=run_id, status=status, counts=counts, seconds=stats["seconds"])
    return RunResult(run_id, status, counts, stats, failure, outcome.plan, outcome.events, outcome.problems)


# --- many courses in this process ----------------------------------------------------------------


async def sync_courses(
    store: Store,
    settings: Settings,
    route: Route,
    scopes: list[Scope] | None = None,
    *,
    all_courses: bool = False,
    trigger: str = "manual",
    actor: str = "cli",
    dry_run: bool = False,
    overwrite_drift: bool = False,
    wait_seconds: float = 0.0,
    progress: Progress | None = None,
    parents: dict[str, str] | None = None,
    full_read: bool = False,
) -> list[RunResult]:
    """Sync each scope (or every course the source sees): one run each, several courses at a time.

    ``parents`` names, per course, the run to several destinations each course's run is part of.

    Courses overlap so one course's reads run while another's writes do; the connectors'
    own caps keep the number of requests in flight to each system where it was.
    ``progress`` hears (assignments done, assignments planned) across all courses.
    """
    tally = {"done": 0, "total": 0}

    def counted(plan: Plan) -> None:
        tally["total"] += len(plan.steps)
        if progress:
            progress(tally["done"], tally["total"])

    def step_done(_done: int, _total: int) -> None:
        tally["done"] += 1
        if progress:
            progress(tally["done"], tally["total"])

    gate = asyncio.Semaphore(max(1, settings.course_concurrency))

    async with open_route(store, settings, route) as opened:
        if all_courses:
            scopes = [Scope(course_id=c) for c in await opened.source.list_course_ids()]

        async def one(scope: Scope) -> RunResult:
            request = RunRequest(
                pipeline="gradebook", source_connection_id=opened.pairing.source_connection_id,
                destination_connection_id=opened.pairing.destination_connection_id,
                scope=RunScope(course_id=scope.course_id, assignment_id=scope.assignment_id,
                               student_id=scope.student_id),
                trigger=trigger, actor=actor, dry_run=dry_run, overwrite_drift=overwrite_drift,
                wait_seconds=wait_seconds, parent_run_id=(parents or {}).get(scope.course_id), full_read=full_read)
            async with gate:
                try:
                    return await run(store, settings, request, connectors=opened.connectors, progress=step_done,
                                     on_plan=counted)
                except Busy as busy:  # this course is another run's now; the other courses go on
                    return RunResult(None, NOT_STARTED, empty_counts(), failure=str(busy))

        return list(await asyncio.gather(*(one(scope) for scope in scopes or [])))


# --- one source, several destinations (B3) ---------------------------------------------------------


STATUS_RANK = ("succeeded", "dry_run", "not_started", "completed_with_errors", INTERRUPTED, FAILED)


def _worst(statuses: list[str]) -> str:
    known = [s for s in statuses if s in STATUS_RANK]
    return max(known, key=STATUS_RANK.index) if known else (statuses[0] if statuses else "succeeded")


async def sync_to_destinations(
    store: Store,
    settings: Settings,
    source: str | int,
    destinations: list[str | int],
    scopes: list[Scope] | None = None,
    *,
    all_courses: bool = False,
    trigger: str = "manual",
    actor: str = "cli",
    dry_run: bool = False,
    overwrite_drift: bool = False,
    wait_seconds: float = 0.0,
    progress: Progress | None = None,
    full_read: bool = False,
) -> list[RunResult]:
    """Sync each course to every destination in one run: one history entry per course, one part per destination.

    Each destination is planned against and written to by its own part run, with its own
    connectors (so its own limits), its own lease and its own identity map; the parts run side
    by side. The run in the history (pipeline ``multi``) adds up their counts, takes the worst
    status, and lists each destination's part, whose items ``passback runs show`` shows.
    A dry run stores nothing and answers the parts' plans.
    """
    if len(destinations) == 1:
        return await sync_courses(store, settings, Route(source, destinations[0]), scopes, all_courses=all_courses,
                                  trigger=trigger, actor=actor, dry_run=dry_run, overwrite_drift=overwrite_drift,
                                  wait_seconds=wait_seconds, progress=progress, full_read=full_read)
    if all_courses:
        async with open_route(store, settings, Route(source, destinations[0])) as opened:
            scopes = [Scope(course_id=str(c)) for c in await opened.source.list_course_ids()]
    scopes = scopes or []
    pairings = []
    for destination in destinations:
        async with open_route(store, settings, Route(source, destination)) as opened:  # checks each route's kinds
            pairings.append(opened.pairing)
    parents: dict[str, str] = {}
    if not dry_run:
        for scope in scopes:
            record = {"course_id": scope.course_id, **({"assignment_id": scope.assignment_id} if scope.assignment_id
                                                       else {}), **({"student_id": scope.student_id}
                                                                    if scope.student_id else {})}
            parents[scope.course_id] = submit_run(
                store, pairings[0], pipeline=MULTI, trigger=trigger, scope=record, actor=actor, status="running",
                request={"destinations": [p.destination_connection_id for p in pairings]})
    parts = await asyncio.gather(*(
        sync_courses(store, settings, Route(source, destination), scopes, trigger=trigger, actor=actor,
                     dry_run=dry_run, overwrite_drift=overwrite_drift, wait_seconds=wait_seconds,
                     progress=progress, parents=parents, full_read=full_read)
        for destination in destinations))
    if dry_run:
        return [result for per_destination in parts for result in per_destination]
    finished = []
    for index, scope in enumerate(scopes):
        mine = [(pairings[d].destination_connection_id, per_destination[index]) for d, per_destination in enumerate(parts)]
        counts = empty_counts()
        for _, result in mine:
            for outcome, n in result.counts.items():
                counts[outcome] = counts.get(outcome, 0) + n
        status = _worst([result.status for _, result in mine])
        failure = "; ".join(f"destination {d}: {r.failure}" for d, r in mine if r.failure) or None
        stats = {"destinations": {str(d): {"run_id": r.run_id, "status": r.status, "counts": r.counts}
                                  for d, r in mine}}
        parent = parents[scope.course_id]
        finish_run(store, parent, counts=counts, stats=stats, status=status if status != FAILED else None,
                   failure=failure if status == FAILED else None)
        finished.append(RunResult(parent, status, counts, stats, failure))
    return finished
