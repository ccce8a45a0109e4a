"""The gradebook pipeline: read a course from the source, plan against the destination, write.

A strategy of the run service: it reads, plans and (unless a dry run) hands the plan to
the :class:`~passback.pipeline.execute.Executor`; the run's lifecycle (start, failure,
finish) is the service's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import date

from passback.connectors.base import Destination, Source
from passback.model import CourseSnapshot
from passback.model.values import DestinationContext
from passback.pipeline.execute import Executor
from passback.pipeline.plan import ASSIGNMENT, SCORE, Plan, PlanInputs, Scope, build_plan
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


async def plan_course(store: Store, connectors: GradebookConnectors, pairing: Pairing, scope: Scope,
                      options: RunOptions, *, overwrite_drift: bool = False, today: date | None = None,
                      phases: dict[str, float] | None = None,
                      snapshot: CourseSnapshot | None = None) -> tuple[Plan, DestinationContext]:
    """Read both systems and the store, and plan; ``snapshot`` reuses a course already read."""
    phases = phases if phases is not None else {}
    source, destination = connectors.source, connectors.destination
    clock = time.perf_counter()
    snapshot, identities, matching = await asyncio.gather(
        _given(snapshot) if snapshot is not None else source.read_course(scope.course_id),
        asyncio.to_thread(load_identities, store, pairing, (ASSIGNMENT, SCORE), f"{scope.course_id}:"),
        asyncio.to_thread(load_matching, store, pairing, scope.course_id),
    )
    phases["read_source"] = round(time.perf_counter() - clock, 3)
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
    phases["plan"] = round(time.perf_counter() - clock, 3)
    return plan, context


class GradebookPipeline(Pipeline):
    name = "gradebook"

    async def run(self, ctx: RunContext, connectors: GradebookConnectors) -> PipelineOutcome:
        request = ctx.request
        plan, context = await plan_course(
            ctx.store, connectors, ctx.pairing, scope_of(request), ctx.options,
            overwrite_drift=request.overwrite_drift, today=request.today, phases=ctx.phases)
        if ctx.on_plan:
            ctx.on_plan(plan)
        if request.dry_run:
            for outcome, n in plan.counts().items():
                ctx.recorder.count(outcome, n)
            return PipelineOutcome(status="dry_run", plan=plan, stats={"planned_writes": plan.writes()})
        executor = Executor(connectors.destination, context, ctx.recorder, ctx.options.concurrency, ctx.progress,
                            source_kind=getattr(connectors.source, "kind", None))
        with ctx.phase("write_and_record"):
            await executor.run(plan)
        ctx.phases["record"] = round(ctx.recorder.seconds, 3)
        return PipelineOutcome(plan=plan)
