"""Leases: who may run a scope now, across threads, processes and machines sharing a store.

A lease names its holder, the run, who started it, since when, and until when. The
holder renews it while the run lives; another run takes it over only once it expired, so
a crashed holder never blocks a course for good. Taking and renewing are single short
transactions: on SQLite the writer's lock (``BEGIN IMMEDIATE``) serializes them, on
PostgreSQL the insert's unique key and ``SELECT ... FOR UPDATE`` do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from passback.store import bulk
from passback.store.db import Store
from passback.store.tables import leases


@dataclass(frozen=True)
class Lease:
    key: str
    holder: str
    run_id: str | None
    actor: str
    since: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Taken:
    lease: Lease
    displaced: Lease | None = None  # an expired lease this one took over: its run died


@dataclass(frozen=True)
class Held:
    by: Lease  # the live lease of another run


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _lease(row: sa.Row) -> Lease:  # type: ignore[type-arg]
    return Lease(row.key, row.holder, row.run_id, row.actor, _aware(row.since), _aware(row.expires_at))


def take(store: Store, key: str, *, actor: str, run_id: str | None, ttl: float) -> Taken | Held:
    """Take the lease on ``key``: free or expired, it is ours; live, it is someone else's."""
    while True:  # a lease released between our insert and our look is free again: try once more
        answer = _try_take(store, key, actor=actor, run_id=run_id, ttl=ttl)
        if answer is not None:
            return answer


def _try_take(store: Store, key: str, *, actor: str, run_id: str | None, ttl: float) -> Taken | Held | None:
    now = datetime.now(UTC)
    mine = Lease(key, str(uuid.uuid4()), run_id, actor[:100], now, now + timedelta(seconds=ttl))
    with store.transaction() as db:
        inserted = db.exec_driver_sql(
            f"INSERT INTO leases (key, holder, run_id, actor, since, expires_at) VALUES ({bulk.marks(db, 6)}) "
            "ON CONFLICT (key) DO NOTHING",
            (key, mine.holder, run_id, mine.actor, bulk.timestamp_value(db, mine.since),
             bulk.timestamp_value(db, mine.expires_at)))
        if inserted.rowcount:
            return Taken(mine)
        row = db.execute(sa.select(leases).where(leases.c.key == key).with_for_update()).first()
        if row is None:
            return None
        current = _lease(row)
        if current.expires_at > now:
            return Held(current)
        db.execute(leases.update().where(leases.c.key == key, leases.c.holder == current.holder).values(
            holder=mine.holder, run_id=run_id, actor=mine.actor, since=mine.since, expires_at=mine.expires_at))
        return Taken(mine, displaced=current)


def renew(store: Store, lease: Lease, ttl: float) -> bool:
    """Push the expiry on; False when the lease is no longer ours (it expired and was taken)."""
    with store.transaction() as db:
        result = db.execute(leases.update().where(leases.c.key == lease.key, leases.c.holder == lease.holder)
                            .values(expires_at=datetime.now(UTC) + timedelta(seconds=ttl)))
    return bool(result.rowcount)


def attach(store: Store, lease: Lease, run_id: str) -> None:
    """Name the run a lease is held for, once the run exists."""
    with store.transaction() as db:
        db.execute(leases.update().where(leases.c.key == lease.key, leases.c.holder == lease.holder)
                   .values(run_id=run_id))


def release(store: Store, lease: Lease) -> None:
    with store.transaction() as db:
        db.execute(leases.delete().where(leases.c.key == lease.key, leases.c.holder == lease.holder))


def live_run_ids(store: Store) -> set[str]:
    """Runs that hold an unexpired lease: alive somewhere."""
    with store.engine.connect() as db:
        rows = db.execute(sa.select(leases.c.run_id).where(leases.c.expires_at > datetime.now(UTC),
                                                           leases.c.run_id.is_not(None))).all()
    return {row.run_id for row in rows}


def holder_of(store: Store, key: str) -> Lease | None:
    """The live lease on ``key``, if any: who is running that scope now."""
    with store.engine.connect() as db:
        row = db.execute(sa.select(leases).where(leases.c.key == key)).first()
    if row is None:
        return None
    lease = _lease(row)
    return lease if lease.expires_at > datetime.now(UTC) else None
