"""Running a plan: writes in parallel under a cap, each outcome recorded, nothing doubled.

Exactly-once rests on three habits:

* an assignment create is announced in the identity map (state ``pending``) before it is
  sent, so a create whose answer was lost (or a crash) is found again by looking the
  assignment up, never by creating it twice;
* scores are upserts keyed by (assignment section, student): repeating one is harmless;
* identity rows, run items and audit entries of an assignment are written in one
  transaction, after the destination confirmed the writes they describe.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import date
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from passback.connectors.base import (
    CreatedAssignment,
    Destination,
    DestinationError,
    DestinationUnavailable,
    ScoreWrite,
    Source,
    SourceError,
)
from passback.connectors.http import request_meter
from passback.model import CourseSnapshot
from passback.plan import (
    ASSIGNMENT,
    DELETE,
    ERROR,
    OUTCOME_OF,
    RELEASE,
    SCORE,
    SKIP,
    UNCHANGED,
    UPDATE,
    AssignmentStep,
    Plan,
    PlanInputs,
    ScoreStep,
    Scope,
    build_plan,
)
from passback.rules.catalogue import entry
from passback.rules.findings import Finding
from passback.store.db import Store
from passback.store.setup import load_mappings, load_switches
from passback.store.history import (
    AuditEntry,
    ItemOutcome,
    empty_counts,
    finish_run,
    record_audit,
    record_items,
    start_run,
)
from passback.store.identity import (
    PENDING,
    SYNCED,
    IdentityRow,
    Pairing,
    delete_identities,
    load_identities,
    upsert_identities,
)

log = structlog.get_logger("passback.sync")

Progress = Callable[[int, int], None]


@dataclass
class RunResult:
    run_id: str | None
    status: str
    counts: dict[str, int]
    plan: Plan | None
    stats: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


@dataclass
class _AssignmentOutcome:
    identities: list[IdentityRow] = field(default_factory=list)
    released: list[tuple[str, str]] = field(default_factory=list)
    items: list[ItemOutcome] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)


def _item(kind: str, key: str, outcome: str, *, dest_id: str | None = None,
          finding: Finding | None = None, code: str | None = None, message: str | None = None,
          context: dict[str, Any] | None = None) -> ItemOutcome:
    ctx = dict(context or {})
    if finding is not None:
        code = finding.code
        message = finding.message
        ctx.update({k: v for k, v in finding.context.items() if v is not None})
    return ItemOutcome(object_kind=kind, source_id=key, outcome=outcome, dest_id=dest_id,
                       code=code, message=message, context=ctx)


class Executor:
    def __init__(self, store: Store, destination: Destination, pairing: Pairing, run_id: str,
                 concurrency: int, progress: Progress | None = None) -> None:
        self.store = store
        self.destination = destination
        self.pairing = pairing
        self.run_id = run_id
        self.concurrency = concurrency
        self.progress = progress
        self.counts: Counter[str] = Counter()
        self.record_seconds = 0.0

    async def run(self, plan: Plan) -> dict[str, int]:
        gate = asyncio.Semaphore(self.concurrency)
        done = 0
        total = len(plan.steps)

        async def one(step: AssignmentStep) -> None:
            nonlocal done
            async with gate:
                outcome = await self._assignment(plan, step)
            await self._record(outcome)
            done += 1
            if self.progress:
                self.progress(done, total)

        await asyncio.gather(*(one(step) for step in plan.steps))
        counts = empty_counts()
        counts.update(self.counts)
        return counts

    # --- recording ------------------------------------------------------------------
    async def _record(self, outcome: _AssignmentOutcome) -> None:
        for item in outcome.items:
            self.counts[item.outcome] += 1
        await asyncio.to_thread(self._write, outcome)

    def _write(self, outcome: _AssignmentOutcome) -> None:
        clock = time.perf_counter()
        with self.store.write_lock, self.store.engine.begin() as db:
            delete_identities(db, self.pairing, outcome.released)
            upsert_identities(db, self.store, self.pairing, outcome.identities)
            record_items(db, self.run_id, outcome.items)
            record_audit(db, self.run_id, self.pairing.destination_connection_id, outcome.audit)
        self.record_seconds += time.perf_counter() - clock

    def _announce(self, row: IdentityRow) -> None:
        with self.store.write_lock, self.store.engine.begin() as db:
            upsert_identities(db, self.store, self.pairing, [row])

    # --- one assignment ---------------------------------------------------------------
    async def _assignment(self, plan: Plan, step: AssignmentStep) -> _AssignmentOutcome:
        out = _AssignmentOutcome()
        context = {"course_id": plan.course_id, "assignment_id": step.assignment_id,
                   "assignment_name": step.name, "course_url": plan.course_url}
        if step.action in (SKIP, ERROR):
            out.items.append(_item(ASSIGNMENT, step.key, OUTCOME_OF[step.action], finding=step.findings[0],
                                   context=context | {"findings": [f.code for f in step.findings]}))
            return out
        if step.action == DELETE:
            return await self._delete(step, context, out)
        if step.action == RELEASE:
            finding = step.findings[0] if step.findings else Finding("destination-assignment-missing", {
                **context, "dest_assignment_id": step.identity.dest_id if step.identity else None})
            out.items.append(_item(ASSIGNMENT, step.key, "skipped", finding=finding, context=context))
            out.released.append((ASSIGNMENT, step.key))
            out.released.extend(self._score_keys_of(step.key))
            return out
        assert step.payload is not None
        try:
            created, outcome = await self._ensure(step)
        except DestinationError as exc:
            return self._assignment_failed(step, exc.code, exc.detail, context, out)
        except DestinationUnavailable as exc:
            return self._assignment_failed(step, "destination-unreachable", str(exc), context, out)
        out.items.append(_item(ASSIGNMENT, step.key, outcome, dest_id=created.dest_id, context=context))
        out.identities.append(IdentityRow(
            ASSIGNMENT, step.key, created.dest_id, step.value_hash,
            step.payload.as_value() | {"section_assignment_ids": created.section_assignment_ids}, SYNCED,
            natural_key={"name": step.payload.name, "due_date": step.payload.due_date.isoformat()},
        ))
        await self._scores(step, created, context, out)
        return out

    def _assignment_failed(self, step: AssignmentStep, code: str, detail: str,
                           context: dict[str, Any], out: _AssignmentOutcome) -> _AssignmentOutcome:
        finding = Finding(code, {**context, "detail": detail,
                                 "due_date": step.payload.due_date.isoformat() if step.payload else None,
                                 "dest_assignment_id": step.identity.dest_id if step.identity else None})
        out.items.append(_item(ASSIGNMENT, step.key, "error", finding=finding, context=context))
        if code == "destination-assignment-missing" or (step.identity and step.identity.state == PENDING
                                                        and code != "destination-unreachable"):
            out.released.append((ASSIGNMENT, step.key))
            out.released.extend((SCORE, s.key) for s in step.scores if s.previous is not None)
        elif step.identity is None and code != "destination-unreachable":
            out.released.append((ASSIGNMENT, step.key))
        log.info("assignment_failed", run_id=self.run_id, code=code, assignment=step.assignment_id)
        return out

    async def _ensure(self, step: AssignmentStep) -> tuple[CreatedAssignment, str]:
        payload = step.payload
        assert payload is not None
        identity = step.identity
        if step.action == UNCHANGED and identity is not None:
            return _created_from(identity), "unchanged"
        if step.action == UPDATE and identity is not None:
            return await self.destination.update_assignment(_created_from(identity), payload), "updated"
        if identity is not None and identity.state == PENDING:
            found = await self.destination.find_assignment(payload)
            if found is not None:
                return found, "created"
        await asyncio.to_thread(self._announce, IdentityRow(ASSIGNMENT, step.key, None, None, None, PENDING))
        for _attempt in range(3):
            try:
                return await self.destination.create_assignment(payload), "created"
            except DestinationUnavailable:
                found = await self.destination.find_assignment(payload)
                if found is not None:
                    return found, "created"
            except DestinationError as exc:
                if exc.code == "duplicate-destination-assignment" and identity is not None and identity.state == PENDING:
                    found = await self.destination.find_assignment(payload)
                    if found is not None:
                        return found, "created"
                raise
        raise DestinationUnavailable("the assignment create was not confirmed after 3 attempts")

    async def _delete(self, step: AssignmentStep, context: dict[str, Any],
                      out: _AssignmentOutcome) -> _AssignmentOutcome:
        assert step.identity is not None and step.identity.dest_id is not None
        try:
            await self.destination.delete_assignment(_created_from(step.identity))
        except (DestinationError, DestinationUnavailable) as exc:
            code = getattr(exc, "code", "destination-unreachable")
            out.items.append(_item(ASSIGNMENT, step.key, "error", code=code, message=str(exc), context=context))
            return out
        out.items.append(_item(ASSIGNMENT, step.key, "deleted", dest_id=step.identity.dest_id, context=context))
        out.released.append((ASSIGNMENT, step.key))
        out.released.extend(self._score_keys_of(step.key))
        return out

    def _score_keys_of(self, assignment_key: str) -> list[tuple[str, str]]:
        rows = load_identities(self.store, self.pairing, (SCORE,), source_prefix=assignment_key + ":")
        return list(rows)

    async def _scores(self, step: AssignmentStep, created: CreatedAssignment,
                      context: dict[str, Any], out: _AssignmentOutcome) -> None:
        pending: dict[str, list[ScoreStep]] = {}
        for score in step.scores:
            if score.action in (SKIP, ERROR):
                item_context = context | {"student_id": score.student_id, "section_id": score.section_id}
                out.items.append(_item(SCORE, score.key, OUTCOME_OF[score.action], finding=score.finding,
                                       context=item_context))
            elif score.action == UNCHANGED:
                out.items.append(ItemOutcome(SCORE, score.key, "unchanged"))
            else:
                pending.setdefault(score.dest_section_id or "", []).append(score)
        for dest_section, scores in pending.items():
            asid = created.section_assignment_ids.get(dest_section)
            if asid is None:
                for score in scores:
                    out.items.append(_item(SCORE, score.key, "error", code="student-not-in-destination-section",
                                           message=entry("student-not-in-destination-section").render(
                                               dest_student_id=score.dest_student_id,
                                               dest_assignment_section_id="(none)"),
                                           context=context | {"student_id": score.student_id}))
                continue
            writes = [ScoreWrite(s.dest_student_id or "", s.payload) for s in scores if s.payload is not None]
            try:
                rejections = await self.destination.write_scores(dest_section, asid, writes)
            except DestinationUnavailable as exc:
                rejections_by = {s.dest_student_id: ("destination-unreachable", str(exc)) for s in scores}
            else:
                rejections_by = {r.student_dest_id: (r.code, r.detail) for r in rejections}
            if any(code == "destination-assignment-missing" for code, _ in rejections_by.values()):
                out.identities = [i for i in out.identities if i.source_id != step.key]
                out.released.append((ASSIGNMENT, step.key))
                out.released.extend((SCORE, s.key) for s in step.scores if s.previous is not None)
            for score in scores:
                item_context = context | {"student_id": score.student_id, "section_id": score.section_id,
                                          "dest_assignment_section_id": asid}
                dest_key = f"{asid}:{score.dest_student_id}"
                if score.dest_student_id in rejections_by:
                    code, detail = rejections_by[score.dest_student_id]
                    finding = Finding(code, item_context | {"dest_student_id": score.dest_student_id,
                                                            "detail": detail,
                                                            "dest_assignment_id": created.dest_id})
                    out.items.append(_item(SCORE, score.key, "error", dest_id=dest_key, finding=finding,
                                           context=item_context))
                    continue
                assert score.payload is not None
                outcome = OUTCOME_OF[score.action]
                out.items.append(ItemOutcome(SCORE, score.key, outcome, dest_id=dest_key))
                if score.action == DELETE:
                    out.released.append((SCORE, score.key))
                else:
                    out.identities.append(IdentityRow(SCORE, score.key, dest_key, None,
                                                      score.payload.as_value(), SYNCED))
                out.audit.append(AuditEntry(
                    action=outcome, source_assignment_id=step.assignment_id, source_student_id=score.student_id,
                    dest_assignment_id=asid, dest_student_id=score.dest_student_id,
                    old_value=score.previous, new_value=None if score.action == DELETE else score.payload.as_value(),
                ))


def _created_from(identity: IdentityRow) -> CreatedAssignment:
    assert identity.dest_id is not None
    return CreatedAssignment(identity.dest_id, dict((identity.value or {}).get("section_assignment_ids", {})))


@dataclass
class SyncRequest:
    scope: Scope
    trigger: str = "manual"
    actor: str = "cli"
    dry_run: bool = False
    district_title_limit: int = 30
    concurrency: int = 8
    block_closed_terms: bool = True
    overwrite_drift: bool = False
    today: date | None = None


async def _given(snapshot: CourseSnapshot) -> CourseSnapshot:
    return snapshot


async def plan_course(store: Store, source: Source, destination: Destination, pairing: Pairing,
                      request: SyncRequest, phases: dict[str, float] | None = None,
                      snapshot: CourseSnapshot | None = None) -> Plan:
    """Read both systems and the store, and plan; ``snapshot`` reuses a course already read."""
    phases = phases if phases is not None else {}
    clock = time.perf_counter()
    snapshot, identities = await asyncio.gather(
        _given(snapshot) if snapshot is not None else source.read_course(request.scope.course_id),
        asyncio.to_thread(load_identities, store, pairing, (ASSIGNMENT, SCORE), f"{request.scope.course_id}:"),
    )
    phases["read_source"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    context = await destination.load_context([s.sis_id for s in snapshot.sections if s.sis_id])
    phases["read_destination"] = round(time.perf_counter() - clock, 3)
    clock = time.perf_counter()
    course_id = snapshot.course.source_id
    mappings, switches = await asyncio.gather(
        asyncio.to_thread(load_mappings, store, pairing, course_id),
        asyncio.to_thread(load_switches, store, pairing.source_connection_id, course_id),
    )
    plan = build_plan(PlanInputs(
        snapshot=snapshot, destination=context, identities=identities, profile=destination.profile,
        district_title_limit=request.district_title_limit, scope=request.scope,
        course_url=source.course_url(course_id),
        category_mappings={k: m.dest_category_id for k, m in mappings.items()},
        sync_switches=switches, today=request.today or date.today(),
        block_closed_terms=request.block_closed_terms, overwrite_drift=request.overwrite_drift,
    ))
    phases["plan"] = round(time.perf_counter() - clock, 3)
    return plan


async def sync_course(store: Store, source: Source, destination: Destination, pairing: Pairing,
                      request: SyncRequest, progress: Progress | None = None,
                      on_plan: Callable[[Plan], None] | None = None) -> RunResult:
    """Read, plan, validate, convert, write and record one course (or part of one)."""
    started = time.perf_counter()
    meter: Counter[str] = Counter()
    request_meter.set(meter)
    if request.dry_run:
        plan = await plan_course(store, source, destination, pairing, request)
        if on_plan:
            on_plan(plan)
        return RunResult(None, "dry_run", plan.counts(), plan,
                         {"seconds": round(time.perf_counter() - started, 3), "planned_writes": plan.writes(),
                          "requests": dict(meter)})
    run_id = start_run(store, pairing, trigger=request.trigger, scope=request.scope.as_dict(),
                       actor=request.actor, dry_run=False)
    log.info("run_started", run_id=run_id, scope=request.scope.as_dict(), trigger=request.trigger)
    plan: Plan | None = None
    phases: dict[str, float] = {}
    try:
        plan = await plan_course(store, source, destination, pairing, request, phases)
        if on_plan:
            on_plan(plan)
        executor = Executor(store, destination, pairing, run_id, request.concurrency, progress)
        clock = time.perf_counter()
        counts = await executor.run(plan)
        phases["write_and_record"] = round(time.perf_counter() - clock, 3)
        phases["record"] = round(executor.record_seconds, 3)
        failure = None
    except (SourceError, DestinationError, DestinationUnavailable) as exc:
        counts, failure = empty_counts(), str(exc)
    stats = {"seconds": round(time.perf_counter() - started, 3), "requests": dict(meter), "phases": phases}
    status = finish_run(store, run_id, counts=counts, stats=stats, failure=failure)
    log.info("run_finished", run_id=run_id, status=status, counts=counts, seconds=stats["seconds"])
    return RunResult(run_id, status, counts, plan, stats, failure)
