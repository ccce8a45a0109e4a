"""The scheduler that lives in the web server: every ``interval`` seconds, run what is due.

It holds no schedule in memory. Each tick reads the store (:func:`run_due`), so a
restarted server carries on where the last one stopped, and a night missed while the
server was down runs at the first tick after it starts (its ``next_run_at`` is in the
past). Two servers (or a server and a worker) sharing a store may both run one: a due
course is claimed in the store, so it runs once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from passback.services.schedules import run_due
from passback.settings import Settings
from passback.store.db import Store

log = structlog.get_logger("passback.scheduler")

class EmbeddedScheduler:
    """Calls :func:`~passback.services.schedules.run_due` now and then every ``interval`` seconds until stopped.

    ``interval`` defaults to ``settings.scheduler_seconds`` (``PASSBACK_SCHEDULER_SECONDS``, 30).
    ``clock`` gives "now" (tests move it); ``ticks`` counts finished ticks and
    ``run_ids`` keeps the runs this scheduler made, newest last.
    """

    def __init__(self, store: Store, settings: Settings, *, interval: float | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        interval = settings.scheduler_seconds if interval is None else interval  # PASSBACK_SCHEDULER_SECONDS, 30
        if interval <= 0:
            raise ValueError("The scheduler's interval must be a positive number of seconds.")
        self.store = store
        self.settings = settings
        self.interval = interval
        self.clock = clock or (lambda: datetime.now(UTC))
        self.ticks = 0
        self.run_ids: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._ticked = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start ticking in the background (the first tick at once); a second start does nothing."""
        if self.running:
            return
        self._ticked = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="passback-scheduler")
        log.info("scheduler_started", interval=self.interval)

    async def stop(self) -> None:
        """Stop ticking. A run in progress is cancelled and recorded as interrupted; its course runs next night."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("scheduler_stopped", ticks=self.ticks)

    async def tick(self) -> list[str]:
        """One pass: run every due schedule; the runs made. Never raises: the loop must outlive a bad night."""
        try:
            made = await run_due(self.store, self.settings, now=self.clock())
        except Exception as exc:  # noqa: BLE001 - the store is down, say: log it and try at the next tick
            log.error("scheduler_tick_failed", error=exc.__class__.__name__)
            made = []
        self.run_ids.extend(made)
        self.ticks += 1
        self._ticked.set()
        return made

    async def wait_ticks(self, count: int = 1, timeout: float | None = None) -> None:
        """Wait until ``count`` ticks have ended since this scheduler was made (tests; a status page)."""
        async def reached() -> None:
            while self.ticks < count:
                self._ticked.clear()
                await self._ticked.wait()

        await asyncio.wait_for(reached(), timeout)

    async def _loop(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)
