"""Posted grades to Ed-Fi: notice changes, queue them, plan by seed 003, send, record.

Produce: every posted grade's export row is hashed; a new, changed or vanished posted
grade becomes an event in the store's queue, and so does a change of the resource
preferences. Nothing changed means no event, and the run ends there having written
nothing (the unchanged re-send costs one read of the export and one query).

Consume: the pending events name the posted grades to look at; each becomes zero or
more Ed-Fi Grade records (one per grading period it reports to), compared with the
identity map by natural key: new or changed values are POSTed (an upsert), a changed
natural key is a DELETE then a POST, records no longer wanted are DELETEd. Identity
rows, run items and the events' processed marks are written together, in batches.

Resync: identity rows whose record is gone from the ODS are dropped (and so sent
again), and ODS grades that neither the source nor the identity map knows are deleted.
With the resource toggled off nothing is sent, sent data stays, and deletes wait (their
events stay pending) until a resync with the resource on.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from passback.connectors.base import PostedGradesSource, RecordsDestination
from passback.convert.edfi import grade_records, natural_key
from passback.model import GradingPeriod, PostedGrade, SectionAssociation
from passback.rules.edfi_rules import EdFiPreferences, association_for, periods_for, reportable
from passback.rules.findings import Finding
from passback.model.posted_rows import PostedExport
from passback.pipeline.edfi_sending import BATCH, GRADE, RESOURCE, GradePlan, GradeSender, Write
from passback.store.db import Store
from passback.store.events import (
    CHANGED,
    DELETED,
    MAPPING_CHANGED,
    POSTED,
    enqueue,
    mark_processed,
    pending,
)
from passback.pipeline.run import Pipeline, PipelineOutcome, RunContext
from passback.store.history import ItemOutcome
from passback.store.identity import (
    IdentityRow,
    Pairing,
    delete_identities,
    load_hashes,
    load_identities,
    load_values,
    upsert_identities,
)

POSTED_KIND, SSA, PREFS, EXPORT = "edfi-posted", "edfi-ssa-set", "edfi-prefs", "edfi-export"
SSA_SET = "studentSectionAssociations"
CHUNK = 16  # posted grades parsed and planned at a time, in the wait for earlier answers


def preferences_from(settings: dict[str, Any]) -> EdFiPreferences:
    grades = settings.get("grades") or {}
    return EdFiPreferences(
        grade_types=dict(grades.get("grade_types") or {}),
        grading_periods={k: tuple(v) for k, v in (grades.get("grading_periods") or {}).items()},
        state_codes={k.upper(): int(v) for k, v in (grades.get("state_codes") or {}).items()},
        school_years=frozenset(int(y) for y in grades.get("school_years") or ()),
        enabled=bool(grades.get("enabled", True)),
    )


def preferences_hash(prefs: EdFiPreferences) -> str:
    mapping = {"grade_types": prefs.grade_types, "grading_periods": {k: list(v) for k, v in prefs.grading_periods.items()},
               "state_codes": prefs.state_codes, "school_years": sorted(prefs.school_years)}
    return hashlib.sha256(json.dumps(mapping, sort_keys=True).encode()).hexdigest()


def record_hash(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def identity_key(posted_id: str, record: dict[str, Any]) -> str:
    period = record["gradingPeriodReference"]
    return f"{posted_id}|{period['gradingPeriodDescriptor']}|{period['gradingPeriodName']}"


def detect_changes(hashes: dict[str, str], deleted: set[str], seen: dict[str, str]) -> list[tuple[str, str]]:
    """Events for what differs between the export and what was last seen of it."""
    events = []
    for posted_id, digest in hashes.items():
        if posted_id in deleted:
            if posted_id in seen:
                events.append((posted_id, DELETED))
        elif posted_id not in seen:
            events.append((posted_id, POSTED))
        elif seen[posted_id] != digest:
            events.append((posted_id, CHANGED))
    events.extend((posted_id, DELETED) for posted_id in seen if posted_id not in hashes)
    return events


def plan_grades(
    posted_ids: list[str],
    grades: dict[str, PostedGrade],
    hashes: dict[str, str],
    prefs: EdFiPreferences,
    periods: list[GradingPeriod],
    associations: dict[tuple[str, str], SectionAssociation],
    identities: dict[str, list[IdentityRow]],
) -> GradePlan:
    """Pure: what to write for these posted grades, and why not where nothing is written."""
    plan = GradePlan()
    memo: dict[tuple[object, ...], list[GradingPeriod]] = {}
    for posted_id in posted_ids:
        grade = grades.get(posted_id)
        held = identities.get(posted_id, [])
        wanted: dict[str, tuple[dict[str, Any], bytes]] = {}
        finding: Finding | None = None
        if grade is not None and not grade.deleted:
            finding = reportable(grade, prefs)
            if finding is None:
                association = association_for(grade, associations)
                chosen = periods_for(grade, prefs, periods, memo)
                if isinstance(association, Finding):
                    finding = association
                elif isinstance(chosen, Finding):
                    finding = chosen
                else:
                    for record in grade_records(grade, prefs, association, chosen):
                        wanted[identity_key(posted_id, record)] = (record, orjson.dumps(record))
        if finding is not None and finding.outcome == "error":
            plan.items.append(_item(posted_id, "error", finding))
            plan.done_posted[posted_id] = hashes.get(posted_id)
            continue  # an error keeps what the ODS holds until the cause is fixed
        if finding is not None:
            plan.items.append(_item(posted_id, "skipped", finding))
        held_by_key = {row.source_id: row for row in held}
        removals = [row for key, row in held_by_key.items() if key not in wanted and row.dest_id]
        if removals and not prefs.enabled:
            plan.deferred_posted.add(posted_id)
            plan.items.append(_item(posted_id, "skipped", Finding("edfi-resource-off", {
                "detail": "a delete waits for a resync with the resource on"})))
            continue
        for row in removals:
            plan.writes.append(Write(posted_id, row.source_id, "delete", old_id=row.dest_id))
        for key, (record, body) in wanted.items():
            digest = record_hash(body)
            current = held_by_key.get(key)
            if current is not None and current.value_hash == digest and current.dest_id:
                plan.unchanged += 1
                continue
            if not prefs.enabled:
                plan.items.append(_item(posted_id, "skipped", Finding("edfi-resource-off", {
                    "detail": "nothing new is sent while the resource is off"})))
                continue
            replace = current is not None and current.dest_id and tuple(current.natural_key or ()) != natural_key(record)
            plan.writes.append(Write(posted_id, key, "replace" if replace else "post", record, body,
                                     old_id=current.dest_id if replace and current else None, value_hash=digest))
        plan.done_posted[posted_id] = None if grade is None or grade.deleted else hashes.get(posted_id)
    return plan


def _item(posted_id: str, outcome: str, finding: Finding) -> ItemOutcome:
    return ItemOutcome(GRADE, posted_id, outcome, code=finding.code, message=finding.message,
                       context={k: v for k, v in finding.context.items() if v is not None})


@dataclass
class StateReportConnectors:
    """The opened connectors a state-reporting run needs, and the Grades resource preferences."""

    posted: PostedGradesSource
    ods: RecordsDestination
    prefs: EdFiPreferences


class StateReporter:
    def __init__(self, store: Store, ods: RecordsDestination, pairing: Pairing, prefs: EdFiPreferences,
                 concurrency: int = 8) -> None:
        self.store = store
        self.ods = ods
        self.pairing = pairing
        self.prefs = prefs
        self.concurrency = concurrency

    # --- reading the ODS ------------------------------------------------------------
    async def grading_periods(self) -> list[GradingPeriod]:
        rows = await self.ods.list_records("gradingPeriods")
        return [GradingPeriod(descriptor=r["gradingPeriodDescriptor"], name=r["gradingPeriodName"],
                              school_id=str(r["schoolReference"]["schoolId"]),
                              school_year=int(r["schoolYearTypeReference"]["schoolYear"]),
                              begin=date.fromisoformat(r["beginDate"]), end=date.fromisoformat(r["endDate"]))
                for r in rows]

    async def associations(self, refresh: bool) -> dict[tuple[str, str], SectionAssociation]:
        """The student section associations, kept in the store and read anew on a resync.

        They are kept as one compact value, every natural key a JSON list: 20,000 of them
        are one row written and read back, not 20,000.
        """
        cached = None if refresh else load_values(self.store, self.pairing, SSA).get(SSA_SET)
        if cached is None:
            cached = [[r["studentReference"]["studentUniqueId"], section["sectionIdentifier"],
                       section["localCourseCode"], str(section["schoolId"]), int(section["schoolYear"]),
                       section["sessionName"], r["beginDate"]]
                      for r in await self.ods.list_records("studentSectionAssociations")
                      for section in (r["sectionReference"],)]
            with self.store.transaction() as db:
                upsert_identities(db, self.store, self.pairing, [IdentityRow(SSA, SSA_SET, None, None, cached)])
        dates = {text: date.fromisoformat(text) for text in {v[6] for v in cached}}
        return {(v[0], v[1]): SectionAssociation(v[0], v[1], v[2], v[3], v[4], v[5], dates[v[6]]) for v in cached}

    # --- a run ---------------------------------------------------------------------------
    def unchanged_since_last_run(self, digest: str | None) -> bool:
        """True when the export file, the preferences and the queue are all as the last
        complete run left them: nothing can need sending, and nothing need be parsed."""
        if digest is None:
            return False
        seen = load_hashes(self.store, self.pairing, EXPORT).get(RESOURCE)
        prefs = load_hashes(self.store, self.pairing, PREFS).get(RESOURCE)
        return (seen == digest and prefs == preferences_hash(self.prefs)
                and not pending(self.store, self.pairing.destination_connection_id))

    def remember_export(self, digest: str | None) -> None:
        if digest is not None and not pending(self.store, self.pairing.destination_connection_id):
            with self.store.transaction() as db:
                upsert_identities(db, self.store, self.pairing, [IdentityRow(EXPORT, RESOURCE, None, digest, None)])

    async def run(self, export: PostedExport, ctx: RunContext) -> PipelineOutcome:
        resync = ctx.request.resync
        started = time.perf_counter()
        hashes = export.hashes
        seen = {k: v or "" for k, v in load_hashes(self.store, self.pairing, POSTED_KIND).items()}
        events = detect_changes(hashes, export.deleted, seen)
        prefs_digest = preferences_hash(self.prefs)
        previous_prefs = load_hashes(self.store, self.pairing, PREFS).get(RESOURCE)
        if previous_prefs is not None and previous_prefs != prefs_digest:
            events.append((RESOURCE, MAPPING_CHANGED))
        if ctx.request.dry_run:
            everything = resync or any(kind == MAPPING_CHANGED for _, kind in events)
            return await self._dry(events, export.grades(None if everything else [p for p, _ in events]), hashes,
                                   resync, ctx)
        phases = ctx.phases
        phases["detect"] = time.perf_counter() - started
        clock = time.perf_counter()
        enqueue(self.store, self.pairing.destination_connection_id, events)
        queue = pending(self.store, self.pairing.destination_connection_id)
        phases["queue"] = time.perf_counter() - clock
        if not queue and not resync:
            if previous_prefs is None:
                self._remember_prefs(prefs_digest)
            return PipelineOutcome(status="nothing to do")
        everything = resync or any(e.kind == MAPPING_CHANGED for e in queue)
        affected = sorted(set(hashes) | set(seen)) if everything else list(dict.fromkeys(
            e.posted_id for e in queue if e.kind != MAPPING_CHANGED))
        by_id = export.grades(affected) if resync else None  # otherwise parsed a chunk at a time
        recorder = ctx.recorder
        clock = time.perf_counter()
        periods, associations = await asyncio.gather(self.grading_periods(), self.associations(refresh=resync))
        phases["read_ods"] = time.perf_counter() - clock
        grade_rows = load_identities(self.store, self.pairing, (GRADE,))
        if resync:
            assert by_id is not None
            recorder.count("deleted", await self._sweep(grade_rows, by_id, periods, associations))
            grade_rows = load_identities(self.store, self.pairing, (GRADE,))
        held: dict[str, list[IdentityRow]] = {}
        for (_, key), row in grade_rows.items():
            held.setdefault(key.split("|", 1)[0], []).append(row)
        clock = time.perf_counter()
        total = GradePlan()

        def planned(posted_ids: list[str]) -> GradePlan:
            grades = by_id if by_id is not None else export.grades(posted_ids)
            plan = plan_grades(posted_ids, grades, hashes, self.prefs, periods, associations, held)
            total.done_posted.update(plan.done_posted)
            total.deferred_posted |= plan.deferred_posted
            recorder.count("unchanged", plan.unchanged)
            return plan

        # Grades with records in the ODS may delete: planned now, so their deletes go first.
        # The others can only POST, and are planned a few at a time while the send goes on.
        known = [p for p in affected if p in held]
        fresh = [p for p in affected if p not in held]
        sender = GradeSender(self.ods, recorder, self.concurrency)
        failed = await sender.send(planned(known), (planned(fresh[i : i + CHUNK])
                                                     for i in range(0, len(fresh), CHUNK)))
        phases["record"] = recorder.seconds
        phases["stream"] = time.perf_counter() - clock
        clock = time.perf_counter()
        self._finish_events(queue, total, {p for p in total.done_posted if p not in failed})
        self._remember_prefs(prefs_digest)
        phases["finish"] = time.perf_counter() - clock
        for name, seconds in phases.items():
            phases[name] = round(seconds, 3)
        return PipelineOutcome(events=len(queue))

    async def _dry(self, events: list[tuple[str, str]], by_id: dict[str, PostedGrade], hashes: dict[str, str],
                   resync: bool, ctx: RunContext) -> PipelineOutcome:
        everything = resync or any(kind == MAPPING_CHANGED for _, kind in events)
        affected = sorted(by_id) if everything else list(dict.fromkeys(p for p, k in events if k != MAPPING_CHANGED))
        recorder = ctx.recorder
        if affected:
            periods, associations = await asyncio.gather(self.grading_periods(), self.associations(refresh=False))
            held: dict[str, list[IdentityRow]] = {}
            for (_, key), row in load_identities(self.store, self.pairing, (GRADE,)).items():
                held.setdefault(key.split("|", 1)[0], []).append(row)
            plan = plan_grades(affected, by_id, hashes, self.prefs, periods, associations, held)
            for write in plan.writes:
                recorder.count("deleted" if write.action == "delete" else "created")
            for item in plan.items:
                recorder.add_one(item)  # a dry run's recorder counts and writes nothing
            recorder.count("unchanged", plan.unchanged)
        return PipelineOutcome(status="dry_run", events=len(events),
                               stats={"planned_writes": recorder.counts["created"] + recorder.counts["deleted"]})

    def _remember_prefs(self, digest: str) -> None:
        with self.store.transaction() as db:
            upsert_identities(db, self.store, self.pairing, [IdentityRow(PREFS, RESOURCE, None, digest, None)])

    async def _sweep(self, grade_rows: dict[tuple[str, str], IdentityRow], by_id: dict[str, PostedGrade],
                     periods: list[GradingPeriod], associations: dict[tuple[str, str], SectionAssociation]) -> int:
        """Resync: forget identity rows the ODS lost; delete ODS grades nobody knows."""
        in_ods = await self.ods.list_records(RESOURCE)
        ods_ids = {r["id"] for r in in_ods}
        lost = [key for key, row in grade_rows.items() if row.dest_id not in ods_ids]
        known_ids = {row.dest_id for key, row in grade_rows.items() if key not in lost}
        wanted_keys = set()
        for grade in by_id.values():
            if grade.deleted or reportable(grade, self.prefs) is not None:
                continue
            association, chosen = association_for(grade, associations), periods_for(grade, self.prefs, periods)
            if isinstance(association, Finding) or isinstance(chosen, Finding):
                continue
            wanted_keys.update(natural_key(r) for r in grade_records(grade, self.prefs, association, chosen))
        orphans = [r["id"] for r in in_ods if r["id"] not in known_ids and natural_key(r) not in wanted_keys]
        with self.store.transaction() as db:
            delete_identities(db, self.pairing, lost)
        if not self.prefs.enabled:
            return 0
        answers = await asyncio.gather(*(self.ods.delete(RESOURCE, record_id) for record_id in orphans))
        return sum(1 for a in answers if a.status in (204, 404))

    def _finish_events(self, queue: list[Any], plan: GradePlan, done: set[str]) -> None:
        finished = [e.id for e in queue if e.kind == MAPPING_CHANGED or
                    (e.posted_id in done and e.posted_id not in plan.deferred_posted)]
        seen_rows = [IdentityRow(POSTED_KIND, p, None, digest, None) for p, digest in plan.done_posted.items()
                     if p in done and digest is not None]
        forget = [(POSTED_KIND, p) for p, digest in plan.done_posted.items() if p in done and digest is None]
        with self.store.transaction() as db:
            for start in range(0, len(seen_rows), BATCH):
                upsert_identities(db, self.store, self.pairing, seen_rows[start : start + BATCH])
            delete_identities(db, self.pairing, forget)
            mark_processed(db, finished, "done")


class StateReportPipeline(Pipeline):
    """Posted grades to the Ed-Fi ODS/API (seed 003), as a strategy of the run service."""

    name = "statereport"

    async def run(self, ctx: RunContext, connectors: StateReportConnectors) -> PipelineOutcome:
        with collection_paused():
            with ctx.phase("read_export"):
                export = await connectors.posted.read()
            reporter = StateReporter(ctx.store, connectors.ods, ctx.pairing, connectors.prefs,
                                     concurrency=ctx.options.concurrency)
            outcome = await reporter.run(export, ctx)
            if not ctx.request.dry_run:
                reporter.remember_export(connectors.posted.digest())
        outcome.problems = [p.message for p in export.problems]
        return outcome


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection during a run.

    A run holds a few hundred thousand long-lived objects (the export's rows, the
    associations, the plan) and makes no reference cycles worth collecting, yet the
    collector's full passes over them cost a fifth of a 20,000-grade send.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
