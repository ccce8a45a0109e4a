"""Run syncs in this process: open the store and the connectors, sync, close.

The CLI calls these; a distributed worker calls the same ``sync_course`` underneath,
so the two differ only in who calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from passback.connectors.base import Destination, Source
from passback.connectors.registry import open_destination, open_source
from passback.plan import Scope
from passback.settings import Settings
from passback.store.connections import get_connection
from passback.store.db import Store
from passback.store.identity import Pairing
from passback.sync import Plan, Progress, RunResult, SyncRequest, sync_course
from passback.vault import load_key


@dataclass(frozen=True)
class Route:
    source: str
    destination: str


@dataclass
class OpenRoute:
    source: Source
    destination: Destination
    pairing: Pairing


@contextlib.asynccontextmanager
async def open_route(store: Store, settings: Settings, route: Route) -> AsyncIterator[OpenRoute]:
    """The two connectors of a route and their pairing, closed on the way out."""
    key = load_key(settings)
    source_conn = get_connection(store, key, route.source)
    dest_conn = get_connection(store, key, route.destination)
    source = open_source(source_conn, settings.concurrency, settings.http_timeout)
    destination = open_destination(dest_conn, settings.concurrency, settings.http_timeout)
    try:
        yield OpenRoute(source, destination, Pairing(source_conn.id, dest_conn.id))
    finally:
        await asyncio.gather(source.aclose(), destination.aclose())


async def sync_courses(
    store: Store,
    settings: Settings,
    route: Route,
    scopes: list[Scope] | None = None,
    *,
    all_courses: bool = False,
    trigger: str = "manual",
    actor: str = "cli",
    dry_run: bool = False,
    overwrite_drift: bool = False,
    progress: Progress | None = None,
) -> list[RunResult]:
    """Sync each scope (or every course the source sees), several courses at a time.

    Courses overlap so one course's reads run while another's writes do; the connectors'
    own caps keep the number of requests in flight to each system where it was.
    ``progress`` hears (assignments done, assignments planned) across all courses.
    """
    tally = {"done": 0, "total": 0}

    def counted(plan: Plan) -> None:
        tally["total"] += len(plan.steps)
        if progress:
            progress(tally["done"], tally["total"])

    def step_done(_done: int, _total: int) -> None:
        tally["done"] += 1
        if progress:
            progress(tally["done"], tally["total"])

    gate = asyncio.Semaphore(max(1, settings.course_concurrency))

    async def one(scope: Scope) -> RunResult:
        request = SyncRequest(
            scope=scope, trigger=trigger, actor=actor, dry_run=dry_run,
            district_title_limit=settings.district_title_limit, concurrency=settings.concurrency,
            block_closed_terms=settings.block_closed_terms, overwrite_drift=overwrite_drift,
        )
        async with gate:
            return await sync_course(store, opened.source, opened.destination, opened.pairing, request,
                                     step_done, counted)

    async with open_route(store, settings, route) as opened:
        if all_courses:
            scopes = [Scope(course_id=c) for c in await opened.source.list_course_ids()]
        return list(await asyncio.gather(*(one(scope) for scope in scopes or [])))
