"""One run at a time per scope: the lease a run holds from before it plans until it ends.

Two runs of one course (a whole-course sync, a sync of one of its assignments or
students) share one lease; two state-reporting sends to one ODS share another. The
second caller waits up to ``wait`` seconds, then stops with a message naming the run in
its way. A run whose process died leaves its lease to expire; the next run takes it over
and ends the dead run as "interrupted" (so does any start that finds a run "running"
with no live lease).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from passback.errors import Conflict
from passback.pipeline.run import RunRequest
from passback.store.db import Store
from passback.store.history import interrupt_run, running_since
from passback.store.leases import Held, Lease, Taken, attach, live_run_ids, release, renew, take

log = structlog.get_logger("passback.leases")

POLL_SECONDS = 0.25
DIED = "interrupted: its process stopped (its lease expired and was taken over)"


class Busy(Conflict):
    """Another run holds the scope; the message says which, since when, and who started it."""

    def __init__(self, message: str, holder: Lease) -> None:
        super().__init__(message)
        self.holder = holder


def lease_key(request: RunRequest) -> str:
    if request.pipeline == "statereport":
        return f"ods:{request.destination_connection_id}"
    return f"course:{request.source_connection_id}:{request.destination_connection_id}:{request.scope.course_id}"


def busy_message(request: RunRequest, holder: Lease) -> str:
    since = holder.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    run = holder.run_id or "(starting)"
    if request.pipeline == "statereport":
        what = f"the Ed-Fi ODS (connection {request.destination_connection_id}) is being sent to"
    else:
        what = f"course {request.scope.course_id} is being synced"
    return (f"{what} by run {run} since {since} (started by {holder.actor}). "
            "Wait for it (--wait SECONDS) or try again when it has finished.")


@dataclass
class HeldLease:
    """A lease in hand, renewed in the background while the run lives."""

    store: Store
    lease: Lease
    ttl: float
    lost: bool = False
    _renewer: asyncio.Task[None] | None = field(default=None, repr=False)

    def attach(self, run_id: str) -> None:
        attach(self.store, self.lease, run_id)

    async def _keep(self, owner: asyncio.Task[object] | None) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            if not await asyncio.to_thread(renew, self.store, self.lease, self.ttl):
                self.lost = True
                log.warning("lease_lost", key=self.lease.key, run_id=self.lease.run_id)
                if owner is not None:
                    owner.cancel()  # another run owns the scope now: this one must stop writing
                return


def interrupt_dead_runs(store: Store, ttl: float) -> list[str]:
    """End as "interrupted" every run marked running whose lease is gone: its process died."""
    alive = live_run_ids(store)
    dead = [r for r in running_since(store, datetime.now(UTC) - timedelta(seconds=ttl)) if r not in alive]
    for run_id in dead:
        interrupt_run(store, run_id, DIED)
    return dead


@contextlib.asynccontextmanager
async def holding(store: Store, request: RunRequest, *, run_id: str | None, wait: float,
                  ttl: float) -> AsyncIterator[HeldLease]:
    """Hold the request's lease for the block; raises :class:`Busy` if it is not free within ``wait``."""
    key = lease_key(request)
    deadline = asyncio.get_running_loop().time() + max(0.0, wait)
    while True:
        answer = await asyncio.to_thread(take, store, key, actor=request.actor, run_id=run_id, ttl=ttl)
        if isinstance(answer, Taken):
            break
        assert isinstance(answer, Held)
        if asyncio.get_running_loop().time() >= deadline:
            raise Busy(busy_message(request, answer.by), answer.by)
        await asyncio.sleep(POLL_SECONDS)
    if answer.displaced is not None and answer.displaced.run_id:
        await asyncio.to_thread(interrupt_run, store, answer.displaced.run_id, DIED)
    held = HeldLease(store, answer.lease, ttl)
    held._renewer = asyncio.create_task(held._keep(asyncio.current_task()))
    try:
        yield held
    finally:
        held._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held._renewer
        if not held.lost:
            await asyncio.to_thread(release, store, held.lease)
