"""One worker process for tests/e2e/test_shared_limits.py: a courseware connector opened the
way the product opens it (settings -> ``http_options`` -> ``open_connector``), sending GETs.

Run as a script: ``python limits_worker.py '<json>'`` with ``url``, ``requests``,
``concurrency`` (this process's own), and for shared limits ``redis_url``, ``prefix``,
``shared`` (in flight, all processes), ``rate`` and ``lease``. It prints ``ready`` once
imported, waits for a line on stdin (so the processes start together),
then prints one JSON line: how many answers came, the errors, the seconds taken, and
(shared limits) the Redis time of each grant.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from typing import Any

from passback.connectors.courseware.config import CoursewareConfig
from passback.connectors.limits import RedisLimiter
from passback.connectors.registry import SOURCE, open_connector
from passback.services.connections import http_options
from passback.settings import Settings


def options(spec: dict[str, Any]) -> Any:
    settings = Settings(data_dir=tempfile.gettempdir(), concurrency=spec["concurrency"], redis_url=spec.get("redis_url"),
                        destination_concurrency=spec.get("shared"), destination_rate=spec.get("rate"))
    chosen = http_options(settings)
    if chosen.limits is None:
        return chosen
    limits = dataclasses.replace(chosen.limits, prefix=spec["prefix"], lease=spec.get("lease", 5.0))
    return dataclasses.replace(chosen, limits=limits)


async def send(spec: dict[str, Any]) -> dict[str, Any]:
    source = open_connector(SOURCE, CoursewareConfig.parse(spec["url"], {"token": "t"}), options(spec), "courseware")
    grants: list[float] = []
    if isinstance(source.client.http.limiter, RedisLimiter):
        source.client.http.limiter.grants = grants
    errors: list[str] = []

    async def one() -> None:
        try:
            await source.client.get("/courses")
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on any
            errors.append(f"{exc.__class__.__name__}: {exc}")

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(spec["requests"])))
    elapsed = time.monotonic() - started
    await source.aclose()
    return {"answered": spec["requests"] - len(errors), "errors": errors[:5], "seconds": elapsed, "grants": grants}


def main() -> None:
    spec = json.loads(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(asyncio.run(send(spec))), flush=True)


if __name__ == "__main__":
    main()
