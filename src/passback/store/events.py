"""The durable event queue of state reporting: what changed, waiting to be sent.

A producer records events in one batch; a consumer reads the pending ones, acts, and
marks them processed in the same transaction as the identity rows it wrote, so an event
is neither lost nor acted on twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from passback.store import bulk
from passback.store.db import Store

POSTED, CHANGED, DELETED, MAPPING_CHANGED = "posted", "changed", "deleted", "mapping-changed"
# Changes the ODS made: an association of a posted grade's student and section, or the grading periods.
ASSOCIATION_CHANGED, PERIODS_CHANGED = "association-changed", "grading-periods-changed"
RETRY = "retry"  # a posted grade that errored (or was refused) in a run that had no event of its own for it
EVERYTHING = frozenset({MAPPING_CHANGED, PERIODS_CHANGED})  # kinds that ask for every posted grade again


@dataclass(frozen=True)
class Event:
    id: int
    posted_id: str
    kind: str


def enqueue(store: Store, destination_connection_id: int, events: Iterable[tuple[str, str]]) -> int:
    events = list(events)
    if events:
        with store.transaction() as db:
            add_events(db, destination_connection_id, events)
    return len(events)


def add_events(db: sa.Connection, destination_connection_id: int, events: list[tuple[str, str]]) -> None:
    """Queue events inside the caller's transaction (with the state they were derived from)."""
    now = bulk.now_value(db)
    bulk.executemany(
        db, f"INSERT INTO edfi_events (destination_connection_id, posted_id, kind, created_at) "
            f"VALUES ({bulk.marks(db, 4)})",
        [(destination_connection_id, posted_id, kind, now) for posted_id, kind in events])


def pending(store: Store, destination_connection_id: int) -> list[Event]:
    with store.engine.connect() as db:
        mark = bulk.marks(db, 1)
        rows = db.exec_driver_sql(
            "SELECT id, posted_id, kind FROM edfi_events WHERE destination_connection_id = "
            f"{mark} AND processed_at IS NULL ORDER BY id", (destination_connection_id,)).all()
    return [Event(*row) for row in rows]


def mark_processed(db: sa.Connection, event_ids: list[int], outcome: str) -> None:
    now = bulk.now_value(db)
    mark = bulk.marks(db, 1)
    bulk.executemany(db, f"UPDATE edfi_events SET processed_at = {mark}, outcome = {mark} WHERE id = {mark}",
                     [(now, outcome, event_id) for event_id in event_ids])
