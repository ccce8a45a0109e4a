"""The gradebook pipeline: read a course from the source, plan against the destination, write.

A strategy of the run service: it reads, plans and (unless a dry run) hands the plan to
the :class:`~passback.pipeline.execute.Executor`; the run's lifecycle (start, failure,
finish) is the service's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from passback.connectors.base import Destination, Source
from passback.model import CourseSnapshot
from passback.model.values import BLANK, DestinationContext
from passback.pipeline.execute import Executor, problem_item
from passback.pipeline.plan import (
    ASSIGNMENT,
    CREATE,
    DELETE,
    RELEASE,
    SCORE,
    UPDATE,
    Plan,
    PlanInputs,
    Scope,
    build_plan,
)
from passback.pipeline.reads import CHANGES, FULL, ReadChoice, choose_read, fingerprint
from passback.pipeline.record import Unit
from passback.pipeline.run import Pipeline, PipelineOutcome, RunContext, RunOptions, RunRequest
from passback.rules.matching import Matching, destination_section_ids, matching_from
from passback.store.cursors import CourseCursor, load_cursor, save_cursor
from passback.store.db import Store
from passback.store.identity import IdentityIndex, Pairing, load_identities
from passback.store.setup import load_mappings, load_match_overrides, load_match_rules, load_switches


@dataclass
class GradebookConnectors:
    """The opened connectors a gradebook run needs."""

    source: Source
    destination: Destination


def scope_of(request: RunRequest) -> Scope:
    if request.scope.course_id is None:
        raise ValueError("a gradebook run needs a course in its scope")
    return Scope(course_id=request.scope.course_id, assignment_id=request.scope.assignment_id,
                 student_id=request.scope.student_id)


def load_matching(store: Store, pairing: Pairing, course_id: str) -> Matching:
    """The pair's matching rules and the hand overrides that hold for this course."""
    overrides = [(o.kind, o.source_id, o.dest_id) for o in load_match_overrides(store, pairing, course_id)]
    return matching_from(load_match_rules(store, pairing), overrides)


async def _given(snapshot: CourseSnapshot) -> CourseSnapshot:
    return snapshot


def keep_withheld(plan: Plan, snapshot: CourseSnapshot) -> Plan:
    """No delete of an assignment whose row the source could not read this time.

    The assignment is absent from the snapshot because its row was unreadable, not because
    it was deleted in the source: deleting it (and its scores) in the destination would
    turn a typo in an export into lost grades. The row's problem is recorded instead.
    """
    withheld = {p.assignment_id for p in snapshot.problems if p.assignment_id}
    if withheld:
        plan.steps = [s for s in plan.steps if not (s.action == DELETE and s.assignment_id in withheld)]
    return plan


@dataclass
class PlanNotes:
    """What planning saw besides the plan: the fingerprint a narrowed read trusts, and how many scores were sent before."""

    fingerprint: str = ""
    scores_held: int = 0
    changed_by_hand: int = 0  # of a narrowed read: scores the destination holds otherwise than last written
    dest_sections: tuple[str, ...] = ()  # the destination sections read


async def _drop(early: asyncio.Future[DestinationContext] | None) -> None:
    """An early destination read not wanted after all: cancelled, its outcome (even an error) ignored."""
    if early is None:
        return
    early.cancel()
    await asyncio.gather(early, return_exceptions=True)  # this task's own cancellation still propagates


async def plan_course(store: Store, connectors: GradebookConnectors, pairing: Pairing, scope: Scope,
                      options: RunOptions, *, overwrite_drift: bool = False, today: date | None = None,
                      phases: dict[str, float] | None = None,
                      snapshot: CourseSnapshot | None = None,
                      on_snapshot: Callable[[CourseSnapshot], None] | None = None,
                      since: datetime | None = None, notes: PlanNotes | None = None,
                      expected_sections: tuple[str, ...] = ()) -> tuple[Plan, DestinationContext]:
    """Read both systems and the store, and plan; ``snapshot`` reuses a course already read.

    ``expected_sections`` (the destination sections the course's last run read) are read from
    the destination while the source is read; if the source's sections now lead elsewhere,
    that read is dropped and the right sections are read after. The destination's answers
    are the same either way: nothing is written in between.

    ``since`` reads only the scores changed after it (the source's declared cursor).
    ``on_snapshot`` hears the course as read (the run records the rows the source could not read).
    """
    phases = phases if phases is not None else {}
    source, destination = connectors.source, connectors.destination
    clock = time.perf_counter()
    if snapshot is not None:
        reading = _given(snapshot)
    elif since is not None:
        reading = source.read_changes(scope.course_id, since)
    else:
        reading = source.read_course(scope.course_id)
    early = asyncio.ensure_future(destination.load_context(list(expected_sections))) if expected_sections else None
    try:
        snapshot, identities, matching = await asyncio.gather(
            reading,
            asyncio.to_thread(load_identities, store, pairing, (ASSIGNMENT, SCORE), f"{scope.course_id}:"),
            asyncio.to_thread(load_matching, store, pairing, scope.course_id),
        )
    except BaseException:
        await _drop(early)
        raise
    phases["read_source"] = round(time.perf_counter() - clock, 3)
    if on_snapshot is not None:
        on_snapshot(snapshot)
    clock = time.perf_counter()
    section_ids = destination_section_ids(snapshot.sections, matching)
    if early is not None and tuple(section_ids) == tuple(expected_sections or ()):
        context = await early
    else:
        await _drop(early)
        context = await destination.load_context(section_ids)
    if notes is not None:
        notes.dest_sections = tuple(section_ids)
    phases["read_destination"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    course_id = snapshot.course.source_id
    mappings, switches = await asyncio.gather(
        asyncio.to_thread(load_mappings, store, pairing, course_id),
        asyncio.to_thread(load_switches, store, pairing.source_connection_id, course_id),
    )
    plan = build_plan(PlanInputs(
        snapshot=snapshot, destination=context, identities=identities, capabilities=destination.capabilities,
        district_title_limit=options.district_title_limit, scope=scope,
        course_url=source.course_url(course_id),
        category_mappings={k: m.dest_category_id for k, m in mappings.items()},
        sync_switches=switches, today=today or date.today(),
        block_closed_terms=options.block_closed_terms, overwrite_drift=overwrite_drift, matching=matching,
    ))
    plan = keep_withheld(plan, snapshot)
    if notes is not None:
        notes.fingerprint = fingerprint(snapshot, context, matching, mappings, switches)
        notes.scores_held = sum(1 for kind, _ in identities if kind == SCORE)
        if snapshot.partial:
            notes.changed_by_hand = changed_by_hand(identities, context)
    phases["plan"] = round(time.perf_counter() - clock, 3)
    return plan, context


WRITES_ASSIGNMENT = frozenset({CREATE, UPDATE, DELETE, RELEASE})


def changed_by_hand(identities: IdentityIndex, context: DestinationContext) -> int:
    """How many scores the destination holds otherwise than passback last wrote them (a hand edit).

    A narrowed read plans only the scores that changed in the source; the destination's
    holdings were read whole anyway, so a hand edit is still seen here, and the course is
    then read whole so the edit is reported (or overwritten, when asked) as a full read would.
    """
    if not context.holdings_known:
        return 0
    blank = BLANK.as_value()
    same: dict[tuple[int, int], bool] = {}  # held payloads and stored values repeat (both are shared objects):
    scores = context.scores  # each distinct pair is compared once
    found = 0
    for (kind, _), row in identities.items():
        stored, dest_id = row.value, row.dest_id
        if kind != SCORE or dest_id is None or stored is None:
            continue
        asid, colon, student = dest_id.partition(":")
        if not colon:
            continue
        held = scores.get((asid, student))
        pair = (id(held), id(stored))
        equal = same.get(pair)
        if equal is None:
            equal = same[pair] = (blank if held is None else held.as_value()) == stored
        if not equal:
            found += 1
    return found


async def _plan_run(ctx: RunContext, connectors: GradebookConnectors,
                    read: list[CourseSnapshot]) -> tuple[Plan, DestinationContext, ReadChoice, CourseCursor | None, PlanNotes]:
    """Plan from the cursor when it can be trusted; else (or when the narrowed plan says so) from a full read."""
    request, scope = ctx.request, scope_of(ctx.request)
    declared = connectors.source.incremental is not None
    cursor = await asyncio.to_thread(load_cursor, ctx.store, ctx.pairing, scope.course_id) if declared else None
    choice = choose_read(cursor, declared=declared, whole_course=scope.whole_course, dry_run=request.dry_run,
                         full_requested=request.full_read or request.overwrite_drift, now=datetime.now(UTC),
                         reconcile_after=timedelta(days=ctx.options.reconcile_days))
    notes = PlanNotes()

    async def planned(since: datetime | None) -> tuple[Plan, DestinationContext]:
        read.clear()
        return await plan_course(ctx.store, connectors, ctx.pairing, scope, ctx.options,
                                 overwrite_drift=request.overwrite_drift, today=request.today, phases=ctx.phases,
                                 on_snapshot=read.append, since=since, notes=notes,
                                 expected_sections=cursor.dest_sections if cursor is not None else ())

    plan, context = await planned(choice.since)
    if choice.mode == CHANGES:
        if cursor is not None and notes.fingerprint != cursor.fingerprint:
            choice = ReadChoice(FULL, "sections, rosters or setup changed since the last read")
        elif notes.changed_by_hand:
            choice = ReadChoice(FULL, "a grade was changed by hand in the destination")
        elif any(step.action in WRITES_ASSIGNMENT for step in plan.steps):
            choice = ReadChoice(FULL, "an assignment is written: every score of it is read")
        if choice.mode == FULL:
            plan, context = await planned(None)
    return plan, context, choice, cursor, notes


def _advance(ctx: RunContext, plan: Plan, snapshot: CourseSnapshot, choice: ReadChoice,
             cursor: CourseCursor | None, notes: PlanNotes, problems: int, name: str) -> None:
    """Keep how far this run read; an error while writing keeps the window open (the next run reads it all)."""
    failed_writes = ctx.recorder.counts.get("error", 0) - plan.counts()["error"] - problems
    now = datetime.now(UTC)
    full_at = now if choice.mode == FULL else (cursor.full_at if cursor else now)
    last_value = snapshot.cursor_value if failed_writes == 0 else None
    save_cursor(ctx.store, ctx.pairing, plan.course_id,
                CourseCursor(name, last_value, notes.fingerprint, full_at, notes.dest_sections))


class GradebookPipeline(Pipeline):
    name = "gradebook"

    async def run(self, ctx: RunContext, connectors: GradebookConnectors) -> PipelineOutcome:
        request = ctx.request
        read: list[CourseSnapshot] = []
        plan, context, choice, cursor, notes = await _plan_run(ctx, connectors, read)
        if ctx.on_plan:
            ctx.on_plan(plan)
        problems = read[0].problems if read else ()
        stats = {"read": choice.mode, "read_reason": choice.reason}
        if choice.mode == CHANGES:  # scores sent before and not read again: unchanged by the cursor's word
            reread = sum(1 for step in plan.steps for score in step.scores if score.previous is not None)
            ctx.recorder.count("unchanged", max(0, notes.scores_held - reread))
        if request.dry_run:
            for outcome, n in plan.counts().items():
                ctx.recorder.count(outcome, n)
            ctx.recorder.count("error", len(problems))
            return PipelineOutcome(status="dry_run", plan=plan, stats={"planned_writes": plan.writes()},
                                   problems=[p.text for p in problems])
        if problems:  # the rows the source could not read: errors on the run, each with its file, line and fix
            await asyncio.to_thread(ctx.recorder.add, Unit(items=[problem_item(p, plan.course_id) for p in problems]))
        executor = Executor(connectors.destination, context, ctx.recorder, ctx.options.concurrency, ctx.progress,
                            source_kind=getattr(connectors.source, "kind", None))
        with ctx.phase("write_and_record"):
            await executor.run(plan)
        ctx.phases["record"] = round(ctx.recorder.seconds, 3)
        incremental = connectors.source.incremental
        if incremental is not None and read and scope_of(request).whole_course:
            ctx.recorder.flush()
            await asyncio.to_thread(_advance, ctx, plan, read[0], choice, cursor, notes, len(problems),
                                    incremental.name)
        return PipelineOutcome(plan=plan, problems=[p.text for p in problems], stats=stats)
