"""Limits per destination shared by separate worker processes, over real HTTP and the real Redis.

Each test starts two (or one) OS processes (``limits_worker.py``), each opening a
courseware connector from settings as the product does, with 8 requests in flight of its
own, against one courseware emulator on loopback with added latency. What the server saw
is the judge: the emulator's gauge of requests in flight (``/_emulator/in_flight``) and the
times requests arrived. A process killed with SIGKILL while holding slots shows that slots
come back after their lease, and not before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.types import ASGIApp, Receive, Scope, Send

from passback.connectors.limits import RedisLimiter, destination_key
from passback.emulators import courseware as courseware_emulator
from passback.emulators.faults import FaultConfig
from tests.conftest import ServedApp

WORKER = Path(__file__).with_name("limits_worker.py")


class Arrivals:
    """The moment each request reached the server (before latency and faults), control paths aside."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/_emulator"):
            self.times.append(time.monotonic())
        await self.app(scope, receive, send)


@contextlib.contextmanager
def courseware(latency_ms: float) -> Iterator[tuple[ServedApp, Arrivals]]:
    state = courseware_emulator.empty_state()
    state["tokens"]["t"] = {"role": "admin"}
    arrivals = Arrivals(courseware_emulator.create_app(state, faults=FaultConfig(latency_ms=latency_ms, seed=5)))
    with ServedApp(arrivals) as served:
        yield served, arrivals


def start(specs: list[dict[str, Any]]) -> list[subprocess.Popen[str]]:
    """The worker processes, each imported and waiting; then all are let go at once."""
    workers = [subprocess.Popen([sys.executable, str(WORKER), json.dumps(spec)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for spec in specs]
    for worker in workers:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            for other in workers:
                other.kill()
            pytest.fail(f"a worker did not start: {worker.communicate(timeout=10)[1][-3000:]}")
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    return workers


def finish(workers: list[subprocess.Popen[str]], timeout: float = 120) -> list[dict[str, Any]]:
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    for result in results:
        assert result["errors"] == [], result
    return results


def spec(served: ServedApp, requests: int, **shared: Any) -> dict[str, Any]:
    return {"url": served.url, "requests": requests, "concurrency": 8, **shared}


def slots_held(redis_url: str, prefix: str, url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.zcard(f"{prefix}:{{{destination_key('courseware', url)}}}:slots"))
    finally:
        client.close()


def test_two_workers_of_eight_each_share_four_in_flight(redis_url: str, redis_prefix: str) -> None:
    with courseware(latency_ms=100) as (served, _):
        # Without shared limits, each process keeps its own 8: the server sees up to 16.
        finish(start([spec(served, 24), spec(served, 24)]))
        alone = served.control("in_flight")
        assert alone["max"] > 4, alone

        served.control("in_flight", {})  # the maximum starts again
        shared = {"redis_url": redis_url, "prefix": redis_prefix, "shared": 4}
        results = finish(start([spec(served, 24, **shared), spec(served, 24, **shared)]))
        seen = served.app.app.state.in_flight.as_dict()  # the same gauge, read from the app's state
        assert seen == served.control("in_flight")

    assert [r["answered"] for r in results] == [24, 24]
    assert seen["total"] == 48
    assert 1 < seen["max"] <= 4, seen
    assert max(r["seconds"] for r in results) >= 48 / 4 * 0.1 * 0.9  # four at a time, 100 ms each
    assert slots_held(redis_url, redis_prefix, served.url) == 0  # every slot was given back


def test_two_workers_together_keep_the_destinations_rate(redis_url: str, redis_prefix: str) -> None:
    rate, each = 20.0, 20
    shared = {"redis_url": redis_url, "prefix": redis_prefix, "shared": 8, "rate": rate}
    with courseware(latency_ms=20) as (served, arrivals):
        results = finish(start([spec(served, each, **shared), spec(served, each, **shared)]))
        times = sorted(arrivals.times)

    assert [r["answered"] for r in results] == [each, each]
    assert len(times) == 2 * each
    # GCRA with a burst of 1: at most 1 + t x rate starts in any t seconds. Judged on the grants, on Redis's
    # clock: a process descheduled between a grant and its send (2 cores, a loaded CI) delivers requests to the
    # server closer together than they were let go, which no client-side limit can prevent.
    grants = sorted(g for r in results for g in r["grants"])
    assert len(grants) == 2 * each
    busiest = max(sum(1 for g in grants if start <= g < start + 1.0) for start in grants)
    assert busiest <= rate + 1, busiest
    gaps = [b - a for a, b in zip(grants, grants[1:])]
    assert min(gaps) >= 1 / rate * 0.99, min(gaps)  # never two starts closer than the interval
    # The server saw the same rate over the whole exchange.
    span = times[-1] - times[0]
    assert span >= (len(times) - 1) / rate * 0.9, span  # the rate held across both processes...
    assert span <= (len(times) - 1) / rate * 1.5, span  # ...and was used, not wasted on waiting


def test_a_killed_worker_leaks_no_slots(redis_url: str, redis_prefix: str) -> None:
    lease = 1.0
    shared = {"redis_url": redis_url, "prefix": redis_prefix, "shared": 4, "lease": lease}
    with courseware(latency_ms=6000) as (served, _):
        [worker] = start([spec(served, 8, **shared)])
        try:
            deadline = time.monotonic() + 10
            while served.control("in_flight")["current"] < 4:
                assert time.monotonic() < deadline, served.control("in_flight")
                time.sleep(0.05)
            limiter = RedisLimiter(redis_url, destination_key("courseware", served.url), concurrency=4, lease=lease,
                                   prefix=redis_prefix)

            async def refused_while_alive() -> None:  # 2.5 leases: the worker's renewals keep its slots
                for _ in range(10):
                    assert await limiter.try_acquire(limiter.new_token()) == -1.0
                    await asyncio.sleep(0.25)
                await limiter.aclose()

            asyncio.run(refused_while_alive())
            assert served.control("in_flight") == {"current": 4, "max": 4, "total": 4}
            assert slots_held(redis_url, redis_prefix, served.url) == 4
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.communicate(timeout=10)
        killed = time.monotonic()

        async def take_all_four() -> float:
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(4):
                    await stack.enter_async_context(limiter.slot())
                waited = time.monotonic() - killed
                assert slots_held(redis_url, redis_prefix, served.url) == 4
            await limiter.aclose()
            return waited

        waited = asyncio.run(asyncio.wait_for(take_all_four(), 10))
        assert worker.returncode == -signal.SIGKILL
        assert served.control("in_flight")["total"] == 4  # the other four requests of the dead worker never went out

    # The dead worker's slots were renewed up to its death, so they lasted from 2/3 of a lease to a lease after it;
    # a waiter notices an expired slot within its longest pause (0.2 s). Leaked slots would never come back.
    assert lease / 3 < waited <= lease + 1.0, waited
    assert slots_held(redis_url, redis_prefix, served.url) == 0
