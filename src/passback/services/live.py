"""Runs started from a page: carried out in the server's process while the page polls their progress.

A person who clicks "Sync now" must not wait for the whole course; the run goes on in the
background and the page asks how far it is. One run per course at a time: a click while
this process runs the course, or while any process holds the course's lease, starts
nothing and answers with the run in the way. Two clicks that meet in this process cannot
both start (the check and the registration happen with no await between them); two
servers that meet are kept apart by the lease, and the loser stores nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from passback.pipeline.run import RunRequest, RunResult
from passback.services import runs
from passback.services.leases import Busy, busy_message, lease_key
from passback.settings import Settings
from passback.store.db import Store
from passback.store.leases import Lease, holder_of

log = structlog.get_logger("passback.live")
KEEP_FINISHED_SECONDS = 600.0


@dataclass
class LiveRun:
    """What the page shows of a run in the background."""

    key: str
    label: str
    actor: str
    started: float = field(default_factory=time.time)
    done: int = 0
    total: int = 0
    finished: float | None = None
    result: RunResult | None = None
    failure: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.finished is None

    def as_dict(self) -> dict[str, Any]:
        result = self.result
        return {"label": self.label, "actor": self.actor, "running": self.running, "done": self.done,
                "total": self.total, "run_id": result.run_id if result else None,
                "status": result.status if result else ("running" if self.running else "not_started"),
                "counts": result.counts if result else None, "failure": self.failure or (result.failure if result else None)}


class LiveRuns:
    """The background runs of this process, one per scope key."""

    def __init__(self) -> None:
        self._runs: dict[str, LiveRun] = {}

    def get(self, request: RunRequest) -> LiveRun | None:
        self._forget_old()
        return self._runs.get(lease_key(request))

    def start(self, store: Store, settings: Settings, request: RunRequest, *, label: str) -> LiveRun:
        """Start the run in the background, or raise :class:`Busy` naming the run in the way."""
        key = lease_key(request)
        current = self._runs.get(key)
        if current is not None and current.running:
            raise Busy(f"{label} is already running here (started by {current.actor}); "
                       f"{current.done} of {current.total} assignments done.", holder=_placeholder(key, current))
        holder = holder_of(store, key)
        if holder is not None:
            raise Busy(busy_message(request, holder), holder)
        live = LiveRun(key, label, request.actor)
        self._runs[key] = live
        live.task = asyncio.create_task(self._carry_out(store, settings, request, live))
        return live

    async def _carry_out(self, store: Store, settings: Settings, request: RunRequest, live: LiveRun) -> None:
        def on_plan(plan: Any) -> None:
            live.total = len(plan.steps)

        def progress(done: int, total: int) -> None:
            live.done, live.total = done, max(total, live.total)

        try:
            live.result = await runs.run(store, settings, request, progress=progress, on_plan=on_plan)
        except Busy as busy:  # another process took the course between our look and our start
            live.failure = str(busy)
        except Exception as exc:  # noqa: BLE001 - shown on the page; the run's history says the rest
            live.failure = runs.describe(exc)
            log.warning("live_run_failed", key=live.key, error=exc.__class__.__name__)
        finally:
            live.finished = time.time()

    async def wait_all(self) -> None:
        """Let every background run end (the server is stopping, or a test wants the outcome)."""
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _forget_old(self) -> None:
        now = time.time()
        for key in [k for k, r in self._runs.items() if r.finished and now - r.finished > KEEP_FINISHED_SECONDS]:
            del self._runs[key]


def _placeholder(key: str, live: LiveRun) -> Lease:
    since = datetime.fromtimestamp(live.started, UTC)
    return Lease(key, "this-process", live.result.run_id if live.result else None, live.actor, since, since)
