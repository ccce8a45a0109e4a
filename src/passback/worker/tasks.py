"""The tasks: thin adapters that call the service layer in a fresh event loop and ask to be retried.

Each worker process opens the store once (after the fork), and runs one task at a time.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog
import uvloop
from celery import Task
from celery.signals import worker_process_init, worker_ready

from passback.services.engine import carry_out, requeue_stale, warm_up as warm_services
from passback.services.schedules import run_due
from passback.settings import get_settings
from passback.store.db import Store, open_store
from passback.worker.app import EXECUTE, REQUEUE, TICK, app

log = structlog.get_logger("passback.worker")
T = TypeVar("T")
YOUNG_COLLECTION_EVERY = 20_000  # allocations between a worker's young collections (Python's default: 700)
_stores: dict[int, Store] = {}


def store() -> Store:
    """This process's store (a forked child opens its own: connections do not cross a fork)."""
    pid = os.getpid()
    if pid not in _stores:
        _stores[pid] = open_store(get_settings())
    return _stores[pid]


@worker_ready.connect
@worker_process_init.connect
def warm_up(**_: Any) -> None:
    """Before the first task (in the worker, or in each child of a prefork pool): the connectors
    imported and the store opened, so a district's first runs are not slower than the rest.

    Then the garbage collector is told to leave what is loaded by now alone (``gc.freeze``:
    modules, classes, the store's engine) and to collect young objects less often: a course's
    run parses a megabyte of destination holdings and thousands of identity rows, and each
    full collection walked every object the worker had imported, several times per run.
    """
    warm_services()
    store()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


def run_in_fresh_loop(work: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop: a task's run starts and ends with a loop of its own, as asyncio.run
    gives, but on the loop the emulators use too; a course's run is hundreds of requests and a
    megabyte of answers, and uvloop's loop and sockets take a fraction of the CPU asyncio's do."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


def enqueue(run_id: str) -> None:
    """Hand a queued run to the workers."""
    execute_run.delay(run_id)


@app.task(name=EXECUTE, bind=True, max_retries=None)
def execute_run(self: Task, run_id: str) -> dict[str, Any]:
    attempt = run_in_fresh_loop(carry_out(store(), get_settings(), run_id))
    if attempt.retry_in is not None:
        raise self.retry(countdown=attempt.retry_in)
    log.info("task_done", run_id=attempt.run_id, status=attempt.status)
    return {"run_id": attempt.run_id, "status": attempt.status}


@app.task(name=TICK)
def tick_schedules() -> list[str]:
    return run_in_fresh_loop(run_due(store(), get_settings(), dispatch=enqueue))


@app.task(name=REQUEUE)
def requeue() -> list[str]:
    return requeue_stale(store(), get_settings(), enqueue)
