"""One recorder for every pipeline: items, identity rows and audit entries, written together.

A pipeline hands the recorder what each unit of work did (an assignment with its scores,
or a batch of Ed-Fi answers); the recorder counts the outcomes and writes the unit's
identity rows, released rows, run items and audit entries in one short transaction,
after the destination confirmed the writes they describe. Units are flushed one by one
(``flush_every=1``) or every N items, and whatever is buffered is flushed when the run
ends, however it ends, so an acknowledged write is never forgotten.

A dry run has a recorder too, with no run id: it counts and writes nothing. Unchanged
items are only counted (see :class:`Recorder`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from passback.store.db import Store
from passback.store.history import OUTCOMES, AuditEntry, ItemOutcome, record_audit, record_items
from passback.store.identity import IdentityRow, Pairing, Release, claim_identity, release_identities, upsert_identities


@dataclass
class Unit:
    """What one unit of work did: the rows it confirmed, the rows it released, what happened."""

    identities: list[IdentityRow] = field(default_factory=list)
    released: list[Release] = field(default_factory=list)
    items: list[ItemOutcome] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)


UNCHANGED = "unchanged"


class Recorder:
    """Counts outcomes and writes units to the store; safe to call from the sender's thread.

    An unchanged item is counted, never stored: a district re-synced nightly would
    otherwise store every score it did not send, every night. Writes, skips and errors
    keep their rows (what was done, and what needs someone).
    """

    def __init__(self, store: Store, pairing: Pairing, run_id: str | None, *, flush_every: int = 1,
                 flush_seconds: float | None = None) -> None:
        self.store = store
        self.pairing = pairing
        self.run_id = run_id
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds  # a slow run still shows its progress in the store this often
        self._flushed_at = time.monotonic()
        self.counts: Counter[str] = Counter()
        self.seconds = 0.0  # spent writing to the store
        self._buffer = Unit()
        self._lock = threading.Lock()

    @property
    def writes(self) -> bool:
        return self.run_id is not None

    def count(self, outcome: str, n: int = 1) -> None:
        """An outcome with no item of its own (records found unchanged)."""
        self.counts[outcome] += n

    def add(self, unit: Unit) -> None:
        """Count a unit's items and keep it; written at once or when the buffer is full."""
        with self._lock:
            for item in unit.items:
                self.counts[item.outcome] += 1
            if not self.writes:
                return
            buffer = self._buffer
            buffer.released.extend(unit.released)
            buffer.identities.extend(unit.identities)
            buffer.items.extend(item for item in unit.items if item.outcome != UNCHANGED)
            buffer.audit.extend(unit.audit)
            full = len(buffer.items) + len(buffer.identities) >= self.flush_every or self._due()
        if full:
            self.flush()

    def add_one(self, item: ItemOutcome, identity: IdentityRow | None = None,
                released: Release | None = None) -> None:
        """One item (with its identity row or released row): the hot path of a bulk send."""
        with self._lock:
            self.counts[item.outcome] += 1
            if not self.writes:
                return
            buffer = self._buffer
            if item.outcome != UNCHANGED:
                buffer.items.append(item)
            if identity is not None:
                buffer.identities.append(identity)
            if released is not None:
                buffer.released.append(released)
            full = len(buffer.items) >= self.flush_every
        if full:
            self.flush()

    def _due(self) -> bool:
        return self.flush_seconds is not None and time.monotonic() - self._flushed_at >= self.flush_seconds

    def flush(self) -> None:
        """Write what is buffered in one transaction."""
        with self._lock:
            unit, self._buffer = self._buffer, Unit()
            self._flushed_at = time.monotonic()
        if not self.writes or not (unit.items or unit.identities or unit.released or unit.audit):
            return
        started = time.perf_counter()
        with self.store.transaction() as db:
            release_identities(db, self.pairing, unit.released)
            upsert_identities(db, self.store, self.pairing, unit.identities)
            record_items(db, self.run_id or "", unit.items)
            record_audit(db, self.run_id or "", self.pairing.destination_connection_id, unit.audit)
        with self._lock:
            self.seconds += time.perf_counter() - started

    def announce(self, row: IdentityRow, seen: IdentityRow | None) -> bool:
        """Write one identity row now, before the write it announces is sent (a pending create).

        Only if the stored row is still ``seen``: False means another run changed it since
        this run planned, and the write must not be sent.
        """
        if not self.writes:
            return True
        with self.store.transaction() as db:
            return claim_identity(db, self.store, self.pairing, row, seen)

    def totals(self) -> dict[str, int]:
        return {outcome: self.counts.get(outcome, 0) for outcome in OUTCOMES}
