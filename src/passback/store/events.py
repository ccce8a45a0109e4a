"""The durable event queue of state reporting: what changed, waiting to be sent.

A producer records events in one batch; a consumer reads the pending ones, acts, and
marks them processed in the same transaction as the identity rows it wrote, so an event
is neither lost nor acted on twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from passback.store import bulk
from passback.store.db import Store
from passback.store.tables import edfi_events

POSTED, CHANGED, DELETED, MAPPING_CHANGED = "posted", "changed", "deleted", "mapping-changed"


@dataclass(frozen=True)
class Event:
    id: int
    posted_id: str
    kind: str


def enqueue(store: Store, destination_connection_id: int, events: Iterable[tuple[str, str]]) -> int:
    events = list(events)
    if events:
        with store.write_lock, store.engine.begin() as db:
            now = bulk.now_value(db)
            bulk.executemany(
                db, f"INSERT INTO edfi_events (destination_connection_id, posted_id, kind, created_at) "
                    f"VALUES ({bulk.marks(db, 4)})",
                [(destination_connection_id, posted_id, kind, now) for posted_id, kind in events])
    return len(events)


def pending(store: Store, destination_connection_id: int) -> list[Event]:
    with store.engine.connect() as db:
        rows = db.execute(sa.select(edfi_events.c.id, edfi_events.c.posted_id, edfi_events.c.kind).where(
            (edfi_events.c.destination_connection_id == destination_connection_id)
            & edfi_events.c.processed_at.is_(None)).order_by(edfi_events.c.id)).all()
    return [Event(row.id, row.posted_id, row.kind) for row in rows]


def mark_processed(db: sa.Connection, event_ids: list[int], outcome: str) -> None:
    if event_ids:
        now = datetime.now(UTC)
        for start in range(0, len(event_ids), 900):
            chunk = event_ids[start : start + 900]
            db.execute(edfi_events.update().where(edfi_events.c.id.in_(chunk)).values(processed_at=now, outcome=outcome))
