"""Throughput of a Canvas -> PowerTeacher Pro sync, against the least work it could do.

Starts a generated district in the emulators (separate processes, real HTTP on
loopback), syncs every course into a fresh SQLite store, then syncs again with nothing
changed. Prints, per latency: scores written, requests sent to each system, the fewest
requests the job needs (reads: one per listing page; writes: one create per valid
assignment and one score batch per assignment section), seconds, scores per second, and
at a non-zero latency the latency-bound minimum (requests x latency / concurrency).

    python bench/canvas_to_powerteacher.py [--courses 10 --sections 4 --students 30 --assignments 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from pathlib import Path

from passback.logs import configure_logging
from passback.services.runs import Route, sync_courses
from passback.sandbox.control import Sandbox
from passback.sandbox.district import DistrictShape
from passback.settings import Settings
from passback.store import open_store
from passback.store.connections import save_connection
from passback.vault import load_key


def least_requests(canvas: dict, per_page: int) -> tuple[int, int]:  # type: ignore[type-arg]
    """Fewest Canvas reads and PowerSchool writes a full first sync needs."""
    reads = 1  # the course list
    writes = 0
    for course in canvas["courses"].values():
        cid = course["id"]
        listings = {
            "sections": sum(1 for s in canvas["sections"].values() if s["course_id"] == cid),
            "enrollments": sum(1 for e in canvas["enrollments"].values() if e["course_id"] == cid),
            "groups": sum(1 for g in canvas["assignment_groups"].values() if g["course_id"] == cid),
            "assignments": sum(1 for a in canvas["assignments"].values() if a["course_id"] == cid),
            "submissions": sum(1 for s in canvas["submissions"].values()
                               if canvas["assignments"][str(s["assignment_id"])]["course_id"] == cid),
        }
        reads += 1 + sum(max(1, math.ceil(n / per_page)) for n in listings.values())
        sections = listings["sections"]
        valid = [a for a in canvas["assignments"].values() if a["course_id"] == cid and a["post_to_sis"]
                 and a["points_possible"] is not None and len(a["name"]) <= 30
                 and canvas["assignment_groups"][str(a["assignment_group_id"])]["sis_source_id"]]
        writes += len(valid) * (1 + sections)
    return reads, writes


async def run_once(store, settings: Settings) -> tuple[list, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    results = await sync_courses(store, settings, Route("lms", "sis"), all_courses=True)
    return results, time.perf_counter() - started


def timed(store, settings: Settings) -> tuple[list, float, float]:  # type: ignore[no-untyped-def]
    cpu = time.process_time()
    results, seconds = asyncio.run(run_once(store, settings))
    return results, seconds, time.process_time() - cpu


def measure(shape: DistrictShape, latency_ms: float, concurrency: int) -> list[dict]:  # type: ignore[type-arg]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        sandbox = Sandbox(data)
        info, _ = sandbox.up(shape, latency_ms=latency_ms)
        try:
            canvas_state = json.loads(sandbox.state_path("canvas").read_text())
            settings = Settings(data_dir=data, concurrency=concurrency)
            store = open_store(settings)
            key = load_key(settings)
            save_connection(store, key, name="lms", kind="canvas", base_url=info.url("canvas"),
                            credentials={"token": info.creds.canvas_token})
            save_connection(store, key, name="sis", kind="powerschool", base_url=info.url("powerschool"),
                            credentials={"client_id": info.creds.powerschool_client_id,
                                         "client_secret": info.creds.powerschool_client_secret})
            reads, writes = least_requests(canvas_state, per_page=100)
            for label in ("full sync", "nothing changed"):
                results, seconds, cpu = timed(store, settings)
                scores = sum(1 for r in results for s in (r.plan.steps if r.plan else [])
                             for x in s.scores if x.action in ("create", "update"))
                canvas_requests = sum(r.stats["requests"].get("canvas", 0) for r in results)
                ps_requests = sum(r.stats["requests"].get("powerschool", 0) for r in results)
                least = reads + (writes if label == "full sync" else 0)
                row = {
                    "run": label, "latency_ms": latency_ms, "scores_written": scores,
                    "canvas_requests": canvas_requests, "powerschool_requests": ps_requests,
                    "least_requests": least, "seconds": seconds, "cpu_seconds": cpu,
                    "scores_per_s": scores / seconds if seconds else 0.0,
                    "latency_bound_s": (canvas_requests + ps_requests) * latency_ms / 1000 / concurrency,
                }
                rows.append(row)
            store.dispose()
        finally:
            sandbox.down()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--courses", type=int, default=10)
    parser.add_argument("--sections", type=int, default=4)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--assignments", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latencies", default="0,20", help="comma list of emulated latencies in ms")
    args = parser.parse_args()
    configure_logging()
    shape = DistrictShape(courses=args.courses, sections=args.sections, students=args.students,
                          assignments=args.assignments, seed=7)
    submissions = args.courses * args.sections * args.students * (args.assignments + (4 if args.courses else 0))
    print(f"district: {args.courses} courses x {args.sections} sections x {args.students} students x "
          f"{args.assignments} assignments (~{submissions} submissions), concurrency {args.concurrency}")
    header = ("run", "latency", "scores", "canvas req", "ps req", "least req", "seconds", "passback cpu s",
              "scores/s", "latency-bound s")
    print(" | ".join(header))
    for latency in (float(x) for x in args.latencies.split(",")):
        for row in measure(shape, latency, args.concurrency):
            print(" | ".join([
                row["run"], f"{row['latency_ms']:g} ms", str(row["scores_written"]), str(row["canvas_requests"]),
                str(row["powerschool_requests"]), str(row["least_requests"]), f"{row['seconds']:.2f}",
                f"{row['cpu_seconds']:.2f}",
                f"{row['scores_per_s']:.0f}", f"{row['latency_bound_s']:.2f}" if row["latency_ms"] else "-",
            ]))


if __name__ == "__main__":
    main()
