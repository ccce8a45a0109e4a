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
from datetime import date

from passback.connectors.base import Destination, Source
from passback.model import CourseSnapshot
from passback.model.values import DestinationContext
from passback.pipeline.execute import Executor, problem_item
from passback.pipeline.plan import ASSIGNMENT, DELETE, SCORE, Plan, PlanInputs, Scope, build_plan
from passback.pipeline.record import Unit
from passback.pipeline.run import Pipeline, PipelineOutcome, RunContext, RunOptions, RunRequest
from passback.rules.matching import Matching, destination_section_ids, matching_from
from passback.store.db import Store
from passback.store.identity import Pairing, load_identities
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


async def plan_course(store: Store, connectors: GradebookConnectors, pairing: Pairing, scope: Scope,
                      options: RunOptions, *, overwrite_drift: bool = False, today: date | None = None,
                      phases: dict[str, float] | None = None,
                      snapshot: CourseSnapshot | None = None,
                      on_snapshot: Callable[[CourseSnapshot], None] | None = None) -> tuple[Plan, DestinationContext]:
    """Read both systems and the store, and plan; ``snapshot`` reuses a course already read.

    ``on_snapshot`` hears the course as read (the run records the rows the source could not read).
    """
    phases = phases if phases is not None else {}
    source, destination = connectors.source, connectors.destination
    clock = time.perf_counter()
    snapshot, identities, matching = await asyncio.gather(
        _given(snapshot) if snapshot is not None else source.read_course(scope.course_id),
        asyncio.to_thread(load_identities, store, pairing, (ASSIGNMENT, SCORE), f"{scope.course_id}:"),
        asyncio.to_thread(load_matching, store, pairing, scope.course_id),
    )
    phases["read_source"] = round(time.perf_counter() - clock, 3)
    if on_snapshot is not None:
        on_snapshot(snapshot)
    clock = time.perf_counter()
    context = await destination.load_context(destination_section_ids(snapshot.sections, matching))
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
    phases["plan"] = round(time.perf_counter() - clock, 3)
    return plan, context


class GradebookPipeline(Pipeline):
    name = "gradebook"

    async def run(self, ctx: RunContext, connectors: GradebookConnectors) -> PipelineOutcome:
        request = ctx.request
        read: list[CourseSnapshot] = []
        plan, context = await plan_course(
            ctx.store, connectors, ctx.pairing, scope_of(request), ctx.options,
            overwrite_drift=request.overwrite_drift, today=request.today, phases=ctx.phases, on_snapshot=read.append)
        if ctx.on_plan:
            ctx.on_plan(plan)
        problems = read[0].problems if read else ()
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
        return PipelineOutcome(plan=plan, problems=[p.text for p in problems])
