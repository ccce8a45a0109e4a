"""Incremental reads: when a run may read only what changed, and when it must read everything.

A run reads a course's scores from the route's cursor when all of these hold; otherwise it
reads the whole course (and says why, in the run's stats):

* the source declares a cursor, and the run covers a whole course and writes (a dry run,
  an assignment or a student shows everything);
* the route has read this course before (a cursor is stored) and no one asked for a
  full read;
* the last full read is younger than the reconciliation period (weekly by default): a
  cursor cannot see a flag set without grading, such as a missing or excused mark, nor a
  hand edit in the destination; a full read can;
* sections, rosters, matching, category mappings and sync switches are as they were at
  the last read (the fingerprint): a student added to a section has old grades the cursor
  will never show;
* the plan of the narrowed read writes no assignment (a created, changed or deleted
  assignment needs every score of it): otherwise the course is read again, whole.

The cursor moves only after a run with no error: an errored score keeps the window open,
so the next run reads it again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from passback.model import CourseSnapshot
from passback.model.values import DestinationContext
from passback.rules.matching import Matching
from passback.store.cursors import CourseCursor

FULL, CHANGES = "full", "changes"


@dataclass(frozen=True)
class ReadChoice:
    mode: str  # FULL or CHANGES
    reason: str
    since: datetime | None = None


def choose_read(cursor: CourseCursor | None, *, declared: bool, whole_course: bool, dry_run: bool,
                full_requested: bool, now: datetime, reconcile_after: timedelta) -> ReadChoice:
    """How this run reads the course's scores (pure: the store and clock are read by the caller)."""
    if not declared:
        return ReadChoice(FULL, "the source reads whole courses only")
    if not whole_course or dry_run:
        return ReadChoice(FULL, "a dry run or a part of a course reads everything")
    if full_requested:
        return ReadChoice(FULL, "a full read was asked for")
    if cursor is None or cursor.last_value is None:
        return ReadChoice(FULL, "no cursor yet (the first read on this route, or the last run had errors)")
    if now - cursor.full_at >= reconcile_after:
        return ReadChoice(FULL, "reconciliation due (the last full read is older than the period)")
    return ReadChoice(CHANGES, "changes since the cursor", cursor.last_value)


def fingerprint(snapshot: CourseSnapshot, context: DestinationContext, matching: Matching,
                mappings: dict[str, Any], switches: dict[str, bool]) -> str:
    """What a narrowed read trusts not to have changed since the last read: who is where, and the setup."""
    sis_ids = sorted(s.sis_id or "" for s in snapshot.students)
    value = {
        "sections": sorted((s.source_id, s.sis_id or "") for s in snapshot.sections),
        "students": sorted((s.source_id, s.sis_id or "") for s in snapshot.students),
        "enrollments": sorted((e.student_id, e.section_id) for e in snapshot.enrollments),
        "categories": sorted((c.source_id, c.destination_ref or "") for c in snapshot.categories),
        "scheme": [(e.name, e.min_fraction) for e in snapshot.grading_scheme],
        "dest_sections": sorted((k, sorted(v.student_ids)) for k, v in context.sections.items()),
        "dest_categories": sorted((k, sorted((c.dest_id, c.name, c.active) for c in v))
                                  for k, v in context.categories.items()),
        "dest_students": [(sis, context.student_ids.get(sis)) for sis in sis_ids],
        "matching": repr(matching),
        "mappings": sorted((k, repr(v)) for k, v in mappings.items()),
        "switches": sorted(switches.items()),
    }
    return hashlib.sha256(json.dumps(value, default=str, separators=(",", ":")).encode()).hexdigest()
