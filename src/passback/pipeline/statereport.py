"""Posted grades to Ed-Fi: notice changes, queue them, plan by seed 003, send, record.

Produce: every posted grade's export row is hashed; a new, changed or vanished posted
grade becomes an event in the store's queue, and so does a change of the resource
preferences. What the ODS changed is noticed too, cheaply, by its change queries: the
newest change version first (one request), and only when it moved the key changes,
changes and deletes of the grading periods and student section associations since the
version last read. A changed association queues the posted grades whose records refer
to it; changed grading periods queue every posted grade. Nothing changed means no
event, and the run ends there having written nothing.

Consume: the pending events name the posted grades to look at; each becomes zero or
more Ed-Fi Grade records (one per grading period it reports to), compared with the
identity map by natural key: new or changed values are POSTed (an upsert), a changed
natural key is a DELETE then a POST, records no longer wanted are DELETEd. Identity
rows, run items and the events' processed marks are written together, in batches. A
posted grade that errors (no association yet, an ODS refusal, ...) keeps its event
pending: every sync looks at it again until it is sent or its source row goes away.

One record, one posted grade: two posted grades that give the same natural key are
never sent over one another. The grade whose record the ODS already holds keeps it
(when neither has one, the one earlier in the export takes it); the other is an error
item ``edfi-duplicate-natural-key`` and waits, so deleting either never deletes the
other's record.

Resync: identity rows whose record is gone from the ODS are dropped (and so sent
again), and ODS grades that neither the source nor the identity map knows are deleted.
With the resource toggled off nothing is sent, sent data stays, and deletes wait (their
events stay pending) until a resync with the resource on.

A dry run reads what a run reads and writes nothing at all: no cache, no queue, no marks.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, runtime_checkable

import orjson

from passback.connectors.base import PostedGradesSource, RecordsDestination
from passback.convert.edfi import grade_records, natural_key, sced_code
from passback.model import GradingPeriod, PostedGrade, SectionAssociation
from passback.rules.edfi_rules import (
    FINAL_GRADE,
    AssociationKey,
    EdFiPreferences,
    association_for,
    duplicate_of,
    periods_for,
    reportable,
)
from passback.rules.findings import Finding
from passback.model.posted_rows import PostedExport
from passback.pipeline.edfi_sending import BATCH, GRADE, RESOURCE, GradePlan, GradeSender, Write
from passback.pipeline.record import Recorder
from passback.store.db import Store
from passback.store.events import (
    ASSOCIATION_CHANGED,
    CHANGED,
    DELETED,
    EVERYTHING,
    MAPPING_CHANGED,
    PERIODS_CHANGED,
    POSTED,
    RETRY,
    Event,
    add_events,
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

POSTED_KIND, PREFS, EXPORT = "edfi-posted", "edfi-prefs", "edfi-export"
REFERENCE, CACHE, SEEN = "edfi-reference", "cache", "seen"  # the ODS's periods and associations, and their version
LEGACY_SSA = ("edfi-ssa-set", "studentSectionAssociations")  # the associations' cache before change queries
PERIODS, ASSOCIATIONS = "gradingPeriods", "studentSectionAssociations"
REFERENCED = (PERIODS, ASSOCIATIONS)
CHUNK = 16  # posted grades parsed and planned at a time, in the wait for earlier answers
Pair = AssociationKey  # (student, section, school year): how a posted grade finds its association
NaturalKey = tuple[Any, ...]


def preferences_from(settings: dict[str, Any]) -> EdFiPreferences:
    """The Grades resource preferences as a connection's settings keep them (``grades``)."""
    grades = settings.get("grades") or {}
    tasks = grades.get("tasks") or {}
    return EdFiPreferences(
        grade_types=dict(grades.get("grade_types") or {}),
        grading_periods={k: tuple(v) for k, v in (grades.get("grading_periods") or {}).items()},
        state_codes={k.upper(): int(v) for k, v in (grades.get("state_codes") or {}).items()},
        school_years=frozenset(int(y) for y in grades.get("school_years") or ()),
        enabled=bool(grades.get("enabled", True)),
        subject_descriptors={code: v for k, v in (grades.get("subject_descriptors") or {}).items()
                             if (code := sced_code(str(k))) is not None},
        final_grade_type=str(grades.get("final_grade_type") or FINAL_GRADE),
        not_final_tasks=frozenset(task for task, marks in tasks.items()
                                  if not (marks.get("final", True) and marks.get("state_reported", True))),
    )


def preferences_settings(prefs: EdFiPreferences) -> dict[str, Any]:
    """The preferences as a connection's settings keep them: what :func:`preferences_from` reads back."""
    stored = {k: v for k, v in preferences_mapping(prefs).items() if k != "not_final_tasks"}
    stored["enabled"] = prefs.enabled
    if prefs.not_final_tasks:
        stored["tasks"] = {task: {"final": False} for task in sorted(prefs.not_final_tasks)}
    return stored


def preferences_mapping(prefs: EdFiPreferences) -> dict[str, Any]:
    """Every mapping of the preferences (not the toggle), as plain values; new kinds only when set,
    so a store written before they existed sees no change."""
    mapping: dict[str, Any] = {
        "grade_types": prefs.grade_types, "grading_periods": {k: list(v) for k, v in prefs.grading_periods.items()},
        "state_codes": prefs.state_codes, "school_years": sorted(prefs.school_years)}
    if prefs.subject_descriptors:
        mapping["subject_descriptors"] = prefs.subject_descriptors
    if prefs.final_grade_type != FINAL_GRADE:
        mapping["final_grade_type"] = prefs.final_grade_type
    if prefs.not_final_tasks:
        mapping["not_final_tasks"] = sorted(prefs.not_final_tasks)
    return mapping


def preferences_hash(prefs: EdFiPreferences) -> str:
    return hashlib.sha256(json.dumps(preferences_mapping(prefs), sort_keys=True).encode()).hexdigest()


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


# --- what the ODS holds that grades refer to ------------------------------------------------


@runtime_checkable
class ChangeQueries(Protocol):
    """A records destination that can say what changed since a version (Ed-Fi's change queries)."""

    async def newest_change_version(self) -> int | None: ...

    async def changes_since(self, resource: str, version: int) -> Any: ...


def period_row(record: dict[str, Any]) -> list[Any]:
    return [record["gradingPeriodDescriptor"], record["gradingPeriodName"], str(record["schoolReference"]["schoolId"]),
            int(record["schoolYearTypeReference"]["schoolYear"]), record["beginDate"], record["endDate"]]


def association_row(record: dict[str, Any]) -> list[Any]:
    section = record["sectionReference"]
    return [record["studentReference"]["studentUniqueId"], section["sectionIdentifier"], section["localCourseCode"],
            str(section["schoolId"]), int(section["schoolYear"]), section["sessionName"], record["beginDate"]]


ROWS = {PERIODS: period_row, ASSOCIATIONS: association_row}


def rekeyed(resource: str, row: list[Any], key: dict[str, Any]) -> list[Any]:
    """A cached row under the new natural key a key change reports (``newKeyValues``)."""
    if resource == PERIODS:
        return [key["gradingPeriodDescriptor"], key["gradingPeriodName"], str(key["schoolId"]), int(key["schoolYear"]),
                *row[4:]]
    return [key["studentUniqueId"], key["sectionIdentifier"], key["localCourseCode"], str(key["schoolId"]),
            int(key["schoolYear"]), key["sessionName"], key["beginDate"]]


def apply_changes(resource: str, rows: dict[str, list[Any]], changes: Any) -> dict[str, list[Any]]:
    """The cached rows after the ODS's key changes, then its changed records, then its deletes."""
    result = dict(rows)
    for change in changes.key_changes:
        if change["id"] in result:
            result[change["id"]] = rekeyed(resource, result[change["id"]], change["newKeyValues"])
    for record in changes.rows:
        result[record["id"]] = ROWS[resource](record)
    for gone in changes.deletes:
        result.pop(gone["id"], None)
    return result


def _by_pair(rows: dict[str, list[Any]]) -> dict[Pair, tuple[Any, ...]]:
    return {(row[0], row[1], row[4]): tuple(row) for row in rows.values()}


@dataclass
class Reference:
    """The grading periods and student section associations of the ODS, as of change version
    ``version`` (None where the ODS offers no change queries), each by record id; and what
    the store held before, to tell what changed."""

    version: int | None
    rows: dict[str, dict[str, list[Any]]]
    held: dict[str, dict[str, list[Any]]] | None

    @property
    def changed(self) -> bool:
        return self.rows != self.held

    def touched_pairs(self) -> set[Pair]:
        """The (student, section, year) whose association appeared, went or changed its key."""
        if self.held is None:
            return set()
        old, new = _by_pair(self.held[ASSOCIATIONS]), _by_pair(self.rows[ASSOCIATIONS])
        return {pair for pair in old.keys() | new.keys() if old.get(pair) != new.get(pair)}

    def periods_changed(self) -> bool:
        return self.held is not None and sorted(self.held[PERIODS].values()) != sorted(self.rows[PERIODS].values())

    def periods(self) -> list[GradingPeriod]:
        return [GradingPeriod(descriptor=r[0], name=r[1], school_id=r[2], school_year=r[3],
                              begin=date.fromisoformat(r[4]), end=date.fromisoformat(r[5]))
                for r in self.rows[PERIODS].values()]

    def associations(self) -> dict[Pair, SectionAssociation]:
        rows = self.rows[ASSOCIATIONS].values()
        dates = {text: date.fromisoformat(text) for text in {r[6] for r in rows}}
        return {(r[0], r[1], r[4]): SectionAssociation(r[0], r[1], r[2], r[3], r[4], r[5], dates[r[6]]) for r in rows}


# --- one record, one posted grade -----------------------------------------------------------


class KeyClaims:
    """Which posted grade each Ed-Fi Grade natural key belongs to, through one run.

    It starts from the identity map (the records the ODS holds, by their posted grade);
    as posted grades are planned, a key a grade no longer wants is let go, and a key
    already held by another grade makes the newcomer lose.
    """

    def __init__(self, held: dict[str, list[IdentityRow]]) -> None:
        self.owner: dict[NaturalKey, str] = {}
        self.keys_of: dict[str, set[NaturalKey]] = {}
        for posted_id, rows in held.items():
            self._take(posted_id, {tuple(row.natural_key) for row in rows if row.dest_id and row.natural_key})

    def _take(self, posted_id: str, keys: set[NaturalKey]) -> None:
        for key in keys:
            self.owner[key] = posted_id
        if posted_id in self.keys_of:
            self.keys_of[posted_id] |= keys
        else:
            self.keys_of[posted_id] = set(keys)

    def _clash(self, posted_id: str, keys: set[NaturalKey]) -> NaturalKey | None:
        """A key another posted grade holds (a plain loop: this runs once per grade of a send)."""
        for key in keys:
            holder = self.owner.get(key)
            if holder is not None and holder != posted_id:
                return key
        return None

    def settle(self, wanted: dict[str, set[NaturalKey]]) -> dict[str, tuple[str, NaturalKey]]:
        """Give each posted grade (in planning order) its keys; the losers, with who holds which key."""
        before = {posted_id: self.keys_of.pop(posted_id) for posted_id in wanted if posted_id in self.keys_of}
        for posted_id, keys in before.items():
            for key in keys - wanted[posted_id]:
                self.owner.pop(key, None)
        losers: dict[str, tuple[str, NaturalKey]] = {}
        for posted_id, keys in wanted.items():
            clash = self._clash(posted_id, keys)
            if clash is None:
                self._take(posted_id, keys)
                continue
            losers[posted_id] = (self.owner[clash], clash)
            # a loser sends nothing, so what it holds in the ODS stays its own
            self._take(posted_id, {key for key in before.get(posted_id, ()) if key not in self.owner})
        return losers


# --- planning -------------------------------------------------------------------------------

Wanted = dict[str, tuple[dict[str, Any], bytes]]  # identity key -> (record, its JSON)


@dataclass
class Referenced:
    """What planning needs from the ODS, built once a run."""

    periods: list[GradingPeriod]
    associations: dict[Pair, SectionAssociation]
    memo: dict[tuple[object, ...], list[GradingPeriod]] = field(default_factory=dict)


def wanted_records(posted_id: str, grade: PostedGrade | None, prefs: EdFiPreferences,
                   ods: Referenced) -> tuple[Wanted, Finding | None]:
    """The records a posted grade should have in the ODS, or the finding that says why none."""
    if grade is None or grade.deleted:
        return {}, None
    finding = reportable(grade, prefs)
    if finding is not None:
        return {}, finding
    association = association_for(grade, ods.associations)
    if isinstance(association, Finding):
        return {}, association
    chosen = periods_for(grade, prefs, ods.periods, ods.memo)
    if isinstance(chosen, Finding):
        return {}, chosen
    return {identity_key(posted_id, record): (record, orjson.dumps(record))
            for record in grade_records(grade, prefs, association, chosen)}, None


def plan_grades(
    posted_ids: list[str],
    grades: dict[str, PostedGrade],
    hashes: dict[str, str],
    prefs: EdFiPreferences,
    ods: Referenced,
    identities: dict[str, list[IdentityRow]],
    claims: KeyClaims,
) -> GradePlan:
    """Pure but for ``claims``: what to write for these posted grades, and why not where nothing is written."""
    plan = GradePlan()
    wanted: dict[str, Wanted] = {}
    for posted_id in posted_ids:
        records, finding = wanted_records(posted_id, grades.get(posted_id), prefs, ods)
        if finding is not None and finding.outcome == "error":
            plan.items.append(_item(posted_id, "error", finding))
            plan.hold(posted_id, hashes.get(posted_id))  # an error keeps what the ODS holds until the cause is fixed
            continue
        if finding is not None:
            plan.items.append(_item(posted_id, "skipped", finding))
        wanted[posted_id] = records
    keys = {posted_id: {natural_key(record) for record, _ in records.values()} for posted_id, records in wanted.items()}
    for posted_id, (holder, key) in claims.settle(keys).items():
        plan.items.append(_item(posted_id, "error", duplicate_of(grades[posted_id], holder, key)))
        plan.hold(posted_id, hashes.get(posted_id))
        del wanted[posted_id]
    for posted_id, records in wanted.items():
        grade = grades.get(posted_id)
        digest = None if grade is None or grade.deleted else hashes.get(posted_id)
        _plan_writes(plan, posted_id, records, identities.get(posted_id, []), prefs, digest)
    return plan


def _plan_writes(plan: GradePlan, posted_id: str, wanted: Wanted, held: list[IdentityRow], prefs: EdFiPreferences,
                 digest: str | None) -> None:
    """One posted grade's deletes and POSTs against what its identity rows say the ODS holds."""
    held_by_key = {row.source_id: row for row in held}
    removals = [row for key, row in held_by_key.items() if key not in wanted and row.dest_id]
    if removals and not prefs.enabled:
        plan.hold(posted_id, digest)
        plan.items.append(_item(posted_id, "skipped", Finding("edfi-resource-off", {
            "detail": "a delete waits until the resource is on again"})))
        return
    for row in removals:
        plan.writes.append(Write(posted_id, row.source_id, "delete", old_id=row.dest_id))
    held_back = False  # a change not sent while the resource is off stays pending, to go once it is on
    for key, (record, body) in wanted.items():
        value_hash = record_hash(body)
        current = held_by_key.get(key)
        if current is not None and current.value_hash == value_hash and current.dest_id:
            plan.unchanged += 1
            continue
        if not prefs.enabled:
            plan.items.append(_item(posted_id, "skipped", Finding("edfi-resource-off", {
                "detail": "nothing new is sent while the resource is off; it is sent once the resource is on"})))
            held_back = True
            continue
        replace = current is not None and current.dest_id and tuple(current.natural_key or ()) != natural_key(record)
        plan.writes.append(Write(posted_id, key, "replace" if replace else "post", record, body,
                                 old_id=current.dest_id if replace and current else None, value_hash=value_hash))
    if held_back:
        plan.hold(posted_id, digest)
    else:
        plan.done_posted[posted_id] = digest


def _item(posted_id: str, outcome: str, finding: Finding) -> ItemOutcome:
    return ItemOutcome(GRADE, posted_id, outcome, code=finding.code, message=finding.message,
                       context={k: v for k, v in finding.context.items() if v is not None})


def held_by_posted(grade_rows: dict[tuple[str, str], IdentityRow]) -> dict[str, list[IdentityRow]]:
    held: dict[str, list[IdentityRow]] = {}
    for (_, key), row in grade_rows.items():
        held.setdefault(key.split("|", 1)[0], []).append(row)
    return held


def posted_ids_of(held: dict[str, list[IdentityRow]], pairs: set[Pair]) -> list[str]:
    """The posted grades with a record in the ODS that refers to one of these associations."""
    if not pairs:
        return []
    return [posted_id for posted_id, rows in held.items()
            if any(row.natural_key and (row.natural_key[11], row.natural_key[9], row.natural_key[8]) in pairs
                   for row in rows)]


def write_counts(writes: list[Write]) -> tuple[int, int]:
    """(deletes, posts) a plan's writes make: a natural-key change is one of each."""
    deletes = sum(1 for w in writes if w.action in ("delete", "replace"))
    posts = sum(1 for w in writes if w.action in ("post", "replace"))
    return deletes, posts


def replaced_records(writes: list[Write], held: dict[str, list[IdentityRow]]) -> int:
    """How many records the ODS holds that these writes rewrite or remove."""
    held_keys = {row.source_id for rows in held.values() for row in rows if row.dest_id}
    return sum(1 for w in writes if w.action != "post" or w.identity_key in held_keys)


@dataclass
class StateReportConnectors:
    """The opened connectors a state-reporting run needs, and the Grades resource preferences."""

    posted: PostedGradesSource
    ods: RecordsDestination
    prefs: EdFiPreferences


@dataclass
class Queue:
    """The events a run acts on: those already pending and those it found (not yet stored)."""

    waiting: list[Event]
    found: list[tuple[str, str]]

    @property
    def everything(self) -> bool:
        return any(e.kind in EVERYTHING for e in self.waiting) or any(k in EVERYTHING for _, k in self.found)

    def posted_ids(self) -> list[str]:
        named = [e.posted_id for e in self.waiting if e.kind not in EVERYTHING]
        named += [p for p, k in self.found if k not in EVERYTHING]
        return list(dict.fromkeys(named))

    def __len__(self) -> int:
        return len(self.waiting) + len(self.found)


def affected_ids(queue: Queue, export: PostedExport, seen: dict[str, str], resync: bool) -> list[str]:
    """The posted grades a run looks at: those its events name, or every one it knows of."""
    named = queue.posted_ids()
    if resync or queue.everything:
        return sorted(set(export.hashes) | set(seen) | set(named))
    return named


def new_events(events: list[tuple[str, str]], waiting: list[Event]) -> list[tuple[str, str]]:
    """Events not already pending: a posted grade waiting for its turn is not queued twice."""
    queued = {(e.posted_id if e.kind not in EVERYTHING else e.kind) for e in waiting}
    fresh: list[tuple[str, str]] = []
    for posted_id, kind in events:
        name = kind if kind in EVERYTHING else posted_id
        if name not in queued:
            queued.add(name)
            fresh.append((posted_id, kind))
    return fresh


class StateReporter:
    def __init__(self, store: Store, ods: RecordsDestination, pairing: Pairing, prefs: EdFiPreferences,
                 concurrency: int = 8) -> None:
        self.store = store
        self.ods = ods
        self.pairing = pairing
        self.prefs = prefs
        self.concurrency = concurrency

    @property
    def destination_id(self) -> int:
        return self.pairing.destination_connection_id

    # --- reading the ODS ------------------------------------------------------------
    def _since(self) -> int | None:
        """The change version the cached reference rows are known good at (None: no cache to trust).

        The cache row holds the version it was read at; the "seen" row a later version up to
        which the ODS changed nothing grades refer to."""
        versions = {k: int(v) for k, v in load_hashes(self.store, self.pairing, REFERENCE).items() if (v or "").isdigit()}
        return max(versions[CACHE], versions.get(SEEN, 0)) if CACHE in versions else None

    def _cached(self) -> dict[str, dict[str, list[Any]]] | None:
        value = load_values(self.store, self.pairing, REFERENCE).get(CACHE)
        if not isinstance(value, dict) or any(not isinstance(value.get(name), dict) for name in REFERENCED):
            return None
        return {name: value[name] for name in REFERENCED}

    async def _read_all(self) -> dict[str, dict[str, list[Any]]]:
        answers = await asyncio.gather(*(self.ods.list_records(name) for name in REFERENCED))
        return {name: {r["id"]: ROWS[name](r) for r in rows} for name, rows in zip(REFERENCED, answers, strict=True)}

    async def _changes(self, since: int) -> dict[str, Any]:
        assert isinstance(self.ods, ChangeQueries)
        answers = await asyncio.gather(*(self.ods.changes_since(name, since) for name in REFERENCED))
        return dict(zip(REFERENCED, answers, strict=True))

    async def _newest(self) -> int | None:
        return await self.ods.newest_change_version() if isinstance(self.ods, ChangeQueries) else None

    async def reference(self, resync: bool) -> Reference:
        """The ODS's grading periods and associations: the cached ones brought up to date by
        change queries; read in full on a resync, the first time, or where there are none."""
        newest = await self._newest()  # before any listing: a change made meanwhile is read again next time
        held = self._cached()
        since = self._since() if held is not None else None
        if resync or held is None or newest is None or since is None:
            return Reference(newest, await self._read_all(), held)
        if newest == since:
            return Reference(newest, held, held)
        changes = await self._changes(since)
        return Reference(newest, {name: apply_changes(name, held[name], changes[name]) for name in REFERENCED}, held)

    async def ods_unchanged(self, persist: bool) -> bool:
        """True when nothing grades refer to changed in the ODS since it was last read: one
        request when no change version moved, a few more when only other records changed."""
        newest = await self._newest()
        if newest is None:
            return True  # no change queries: an ODS change is seen by the next run or resync
        since = self._since()
        if since is None:
            return False  # nothing read yet to compare with
        if newest == since:
            return True
        if any((await self._changes(since)).values()):
            return False
        if persist:  # moved by other records only: the next look starts from here
            with self.store.transaction() as db:
                upsert_identities(db, self.store, self.pairing, [IdentityRow(REFERENCE, SEEN, None, str(newest), None)])
        return True

    def _reference_events(self, reference: Reference, held: dict[str, list[IdentityRow]]) -> list[tuple[str, str]]:
        """What the ODS changed, as events: every grade again after a grading period change, else
        the posted grades whose records refer to an association that changed."""
        if reference.periods_changed():
            return [(RESOURCE, PERIODS_CHANGED)]
        return [(posted_id, ASSOCIATION_CHANGED) for posted_id in posted_ids_of(held, reference.touched_pairs())]

    def _commit(self, reference: Reference, events: list[tuple[str, str]]) -> None:
        """The reference rows read and the events found, in one transaction."""
        version = None if reference.version is None else str(reference.version)
        with self.store.transaction() as db:
            if reference.changed:
                upsert_identities(db, self.store, self.pairing, [IdentityRow(REFERENCE, CACHE, None, version,
                                                                             reference.rows)])
                delete_identities(db, self.pairing, [LEGACY_SSA])
            upsert_identities(db, self.store, self.pairing, [IdentityRow(REFERENCE, SEEN, None, version, None)])
            add_events(db, self.destination_id, events)

    # --- a run ---------------------------------------------------------------------------
    def unchanged_since_last_run(self, digest: str | None) -> bool:
        """True when the export file, the preferences and the queue are all as the last
        complete run left them: nothing in the source can need sending."""
        if digest is None:
            return False
        seen = load_hashes(self.store, self.pairing, EXPORT).get(RESOURCE)
        prefs = load_hashes(self.store, self.pairing, PREFS).get(RESOURCE)
        return (seen == digest and prefs == preferences_hash(self.prefs)
                and not pending(self.store, self.destination_id))

    async def nothing_to_do(self, digest: str | None, dry_run: bool) -> bool:
        """The cheap look before a run: the source as the last run left it and the ODS's
        grading periods and associations unchanged. A dry run remembers nothing of it."""
        return self.unchanged_since_last_run(digest) and await self.ods_unchanged(persist=not dry_run)

    def remember_export(self, digest: str | None) -> None:
        if digest is not None and not pending(self.store, self.destination_id):
            with self.store.transaction() as db:
                upsert_identities(db, self.store, self.pairing, [IdentityRow(EXPORT, RESOURCE, None, digest, None)])

    def _found_events(self, export: PostedExport, seen: dict[str, str]) -> list[tuple[str, str]]:
        events = detect_changes(export.hashes, export.deleted, seen)
        previous = load_hashes(self.store, self.pairing, PREFS).get(RESOURCE)
        if previous is not None and previous != preferences_hash(self.prefs):
            events.append((RESOURCE, MAPPING_CHANGED))
        return events

    async def run(self, export: PostedExport, ctx: RunContext) -> PipelineOutcome:
        """Find the events (the export's, the ODS's), store them with what was read, act on the queue."""
        resync = ctx.request.resync
        with ctx.phase("detect"):
            seen = {k: v or "" for k, v in load_hashes(self.store, self.pairing, POSTED_KIND).items()}
            events = self._found_events(export, seen)
        with ctx.phase("read_ods"):
            reference = await self.reference(resync)
        grade_rows = load_identities(self.store, self.pairing, (GRADE,))
        held = held_by_posted(grade_rows)
        events += self._reference_events(reference, held)
        queue = Queue(pending(self.store, self.destination_id), [])
        queue.found = new_events(events, queue.waiting)
        if ctx.request.dry_run:
            return await self._dry(export, queue, seen, reference, held, ctx)
        with ctx.phase("queue"):
            self._commit(reference, queue.found)
            queue = Queue(pending(self.store, self.destination_id), [])
        if not queue and not resync:
            self._remember_prefs()
            return PipelineOutcome(status="nothing to do")
        await self._send(export, queue, affected_ids(queue, export, seen, resync), reference, grade_rows, ctx)
        return PipelineOutcome(events=len(queue))

    async def _send(self, export: PostedExport, queue: Queue, affected: list[str], reference: Reference,
                    grade_rows: dict[tuple[str, str], IdentityRow], ctx: RunContext) -> None:
        """Plan the affected posted grades and send the plan: deletes first, then the POSTs
        streamed while later grades are still being planned; then mark the events."""
        phases = ctx.phases
        by_id = export.grades(affected) if ctx.request.resync else None  # otherwise parsed a chunk at a time
        ods = Referenced(reference.periods(), reference.associations())
        if by_id is not None:
            ctx.recorder.count("deleted", await self._sweep(grade_rows, by_id, ods, ctx.recorder))
            grade_rows = load_identities(self.store, self.pairing, (GRADE,))
        held = held_by_posted(grade_rows)
        clock = time.perf_counter()
        total = GradePlan()
        claims = KeyClaims(held)

        def planned(posted_ids: list[str]) -> GradePlan:
            grades = by_id if by_id is not None else export.grades(posted_ids)
            plan = plan_grades(posted_ids, grades, export.hashes, self.prefs, ods, held, claims)
            total.merge(plan)
            ctx.recorder.count("unchanged", plan.unchanged)
            return plan

        # Grades with records in the ODS may delete: planned now, so their deletes go first.
        # The others can only POST, and are planned a few at a time while the send goes on.
        known = [p for p in affected if p in held]
        fresh = [p for p in affected if p not in held]
        sender = GradeSender(self.ods, ctx.recorder, self.concurrency, ctx.progress)
        failed = await sender.send(planned(known), (planned(fresh[i : i + CHUNK])
                                                     for i in range(0, len(fresh), CHUNK)))
        phases["record"] = ctx.recorder.seconds
        phases["stream"] = time.perf_counter() - clock
        with ctx.phase("finish"):
            self._finish_events(queue.waiting, total, failed)
            self._remember_prefs()
        for name, seconds in phases.items():
            phases[name] = round(seconds, 3)

    async def _dry(self, export: PostedExport, queue: Queue, seen: dict[str, str], reference: Reference,
                   held: dict[str, list[IdentityRow]], ctx: RunContext) -> PipelineOutcome:
        """The plan a run would carry out, counted and shown, with nothing written anywhere."""
        recorder = ctx.recorder
        affected = affected_ids(queue, export, seen, ctx.request.resync)
        affected = [p for p in affected if p in held] + [p for p in affected if p not in held]
        deletes = posts = replaced = 0
        if affected:
            ods = Referenced(reference.periods(), reference.associations())
            plan = plan_grades(affected, export.grades(affected), export.hashes, self.prefs, ods, held,
                               KeyClaims(held))
            deletes, posts = write_counts(plan.writes)
            replaced = replaced_records(plan.writes, held)
            recorder.count("deleted", deletes)
            recorder.count("created", posts)
            for item in plan.items:
                recorder.add_one(item)  # a dry run's recorder counts and writes nothing
            recorder.count("unchanged", plan.unchanged)
        return PipelineOutcome(status="dry_run", events=len(queue),
                               stats={"planned_writes": deletes + posts, "planned_deletes": deletes,
                                      "planned_posts": posts, "planned_replacements": replaced})

    def _remember_prefs(self) -> None:
        with self.store.transaction() as db:
            upsert_identities(db, self.store, self.pairing,
                              [IdentityRow(PREFS, RESOURCE, None, preferences_hash(self.prefs), None)])

    async def _sweep(self, grade_rows: dict[tuple[str, str], IdentityRow], by_id: dict[str, PostedGrade],
                     ods: Referenced, recorder: Recorder) -> int:
        """Resync: forget identity rows the ODS lost; delete ODS grades nobody knows."""
        in_ods = await self.ods.list_records(RESOURCE)
        ods_ids = {r["id"] for r in in_ods}
        lost = [key for key, row in grade_rows.items() if row.dest_id not in ods_ids]
        known_ids = {row.dest_id for key, row in grade_rows.items() if key not in lost}
        wanted_keys = {natural_key(record) for posted_id, grade in by_id.items()
                       for record, _ in wanted_records(posted_id, grade, self.prefs, ods)[0].values()}
        orphans = [r["id"] for r in in_ods if r["id"] not in known_ids and natural_key(r) not in wanted_keys]
        with self.store.transaction() as db:
            delete_identities(db, self.pairing, lost)
        if not self.prefs.enabled:
            return 0
        answers = await asyncio.gather(*(self.ods.delete(RESOURCE, record_id) for record_id in orphans),
                                       return_exceptions=True)
        deleted = 0
        for record_id, answer in zip(orphans, answers, strict=True):
            if isinstance(answer, BaseException):  # no answer after every retry: said, and tried again next resync
                if not isinstance(answer, Exception):
                    raise answer
                recorder.add_one(_item(f"orphan:{record_id}", "error", Finding("destination-unreachable", {
                    "detail": f"DELETE of ODS grade {record_id}, which nobody sent: {answer}"})))
            elif answer.status in (204, 404):
                deleted += 1
            else:
                recorder.add_one(_item(f"orphan:{record_id}", "error", Finding("destination-rejected", {
                    "detail": f"DELETE of ODS grade {record_id}, which nobody sent: HTTP {answer.status} "
                              f"{answer.detail}"})))
        return deleted

    def _finish_events(self, queue: list[Event], plan: GradePlan, failed: set[str]) -> None:
        """Mark done the events of the grades now as wanted; the others stay, or get a retry event."""
        done = {p for p in plan.done_posted if p not in failed and p not in plan.waiting}
        finished = [e.id for e in queue if e.kind in EVERYTHING or e.posted_id in done]
        still = {e.posted_id for e in queue if e.kind not in EVERYTHING and e.posted_id not in done}
        retry = [(p, RETRY) for p in sorted((plan.waiting | failed) - still)]
        seen_rows = [IdentityRow(POSTED_KIND, p, None, digest, None) for p, digest in plan.done_posted.items()
                     if p not in failed and digest is not None]
        forget = [(POSTED_KIND, p) for p, digest in plan.done_posted.items() if p not in failed and digest is None]
        with self.store.transaction() as db:
            for start in range(0, len(seen_rows), BATCH):
                upsert_identities(db, self.store, self.pairing, seen_rows[start : start + BATCH])
            delete_identities(db, self.pairing, forget)
            mark_processed(db, finished, "done")
            add_events(db, self.destination_id, retry)


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
