"""What every run shares, whichever pipeline it runs: the request, the context, the result.

A :class:`RunRequest` is a plain, serialisable value (it is stored with the queued run
and can travel to a worker); a :class:`RunContext` is what a pipeline gets while it
runs (the store, the recorder, the request meter, the phase clock); a
:class:`RunResult` is what every run gives back. A pipeline is a strategy: it plans and
writes through the context and never starts, finishes or fails a run itself.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from passback.pipeline.record import Recorder
from passback.store.db import Store
from passback.store.identity import Pairing

Progress = Callable[[int, int], None]
PipelineName = Literal["gradebook", "statereport"]


class RunScope(BaseModel):
    """What a run covers: a whole course, one assignment or one student; or a state-reporting send."""

    model_config = ConfigDict(frozen=True)

    course_id: str | None = None
    assignment_id: str | None = None
    student_id: str | None = None
    resource: str | None = None  # state reporting: the Ed-Fi resource sent


class RunRequest(BaseModel):
    """A run as asked for: stored with the queued run, enough to carry it out anywhere."""

    model_config = ConfigDict(frozen=True)

    pipeline: PipelineName
    source_connection_id: int
    destination_connection_id: int
    scope: RunScope = Field(default_factory=RunScope)
    trigger: str = "manual"
    actor: str = "cli"
    dry_run: bool = False
    overwrite_drift: bool = False  # gradebook: send the source's grade over a hand edit
    resync: bool = False  # state reporting: everything again, orphans deleted
    full_read: bool = False  # gradebook: read every score, not only what changed since the cursor (reconciliation)
    today: date | None = None  # the day closed terms are judged by (tests set it)
    wait_seconds: float = 0.0  # how long to wait for another run of the same scope to end
    parent_run_id: str | None = None  # the run to several destinations this run is the part of

    @property
    def pairing(self) -> Pairing:
        return Pairing(self.source_connection_id, self.destination_connection_id)

    def scope_record(self) -> dict[str, Any]:
        """The scope as the run history shows it."""
        return self.scope.model_dump(exclude_none=True)


@dataclass(frozen=True)
class RunOptions:
    """The district's settings a run obeys (from ``PASSBACK_*``)."""

    concurrency: int = 8
    district_title_limit: int = 30
    block_closed_terms: bool = True
    reconcile_days: float = 7.0  # a course is read whole at least this often, whatever its cursor says


@dataclass
class RunResult:
    """What a run did. ``plan`` is the gradebook plan (shown by a dry run); ``events`` and
    ``problems`` are state reporting's queue length and unreadable export rows."""

    run_id: str | None
    status: str
    counts: dict[str, int]
    stats: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    plan: Any = None
    events: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class PipelineOutcome:
    """What a pipeline hands back to the run service; counts come from the recorder."""

    status: str | None = None  # None: decided by the counts (succeeded / completed with errors)
    plan: Any = None
    events: int = 0
    problems: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    store: Store
    request: RunRequest
    run_id: str | None
    recorder: Recorder
    options: RunOptions
    meter: Counter[str] = field(default_factory=Counter)
    phases: dict[str, float] = field(default_factory=dict)
    progress: Progress | None = None
    on_plan: Callable[[Any], None] | None = None

    @property
    def pairing(self) -> Pairing:
        return self.request.pairing

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        clock = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.perf_counter() - clock, 3)


class Pipeline(ABC):
    """A run strategy: the gradebook sync, or the state-reporting send."""

    name: str

    @abstractmethod
    async def run(self, ctx: RunContext, connectors: Any) -> PipelineOutcome:
        """Plan and (unless a dry run) write, recording through ``ctx.recorder``.

        Any exception ends the run as failed with its reason; what was recorded stays.
        """
