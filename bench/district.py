"""A district sync through the task engine, against the least work and time it could take.

What runs: a generated district (``--sections`` sections of ``--students`` students, each
course ``--sections-per-course`` sections with ``--assignments`` assignments; 200 x 30 x 40 =
240,000 scores by default; each grade given at its own moment over the last 28 days, unless
``--as-generated``) served by the Canvas and PowerSchool emulators as separate processes
(:class:`passback.sandbox.control.Sandbox`; ``--quiet-emulators``: the same apps served by this
script with no state file) with ``--latency-ms`` on every request; a PostgreSQL store in a
schema of its own (dropped at the end); a redis-server of its own on a free port as the broker;
and ``python -m passback worker`` processes (one course at a time each, ``PASSBACK_CONCURRENCY``
requests in flight per system per run).
Each phase vacuums and analyzes the store's tables (as autovacuum does after a bulk load, not timed),
starts its workers afresh (so each one's peak memory is that phase's), empties
Canvas's throttle bucket, then is timed from ``queue_courses(all_courses=True)`` to the end
of its last run (the run's ``finished_at``; ``wait_for_runs`` waits for them all):

0. memory baseline: 10% of the district (its own emulators and store), full sync, 1 worker;
a. full sync, 1 worker (fresh store, fresh PowerSchool);
b. full sync, 2 workers (fresh store; the emulators restarted on the district as generated);
c. re-sync with nothing changed, 2 workers (the cursor of b);
d. re-sync after 1% of the graded submissions were regraded through Canvas's API
   (``PUT .../submissions/:user_id`` with ``submission[posted_grade]``; not timed), 2 workers.

Per phase it prints the requests the runs sent (the sum of their ``stats["requests"]``, plus
the course listing ``queue_courses`` makes), what the emulators counted
(``/_emulator/stats``: also the OAuth token requests, which the runs do not meter), and
the fewest requests the APIs need:

* full sync: as ``bench/canvas_to_powerteacher.py`` counts them (one Canvas read per listing
  page, one PowerSchool create per valid assignment and one score batch per assignment
  section) plus the PowerSchool reads a course needs (below);
* re-sync from the cursor: per course the course, its sections, enrollments, assignment groups
  and assignments (pages), the two narrowed submissions listings (``graded_since``,
  ``submitted_since``; pages), and the PowerSchool reads ``load_context`` makes (per section
  the section and its roster pages; the count of the school's students; the teacher's
  categories; one assignment lookup), plus the school's students (pages) once in the phase:
  a worker keeps the list between runs while its count holds; writes: one score batch per
  (assignment, section) with a change.

Time is compared with the latency-bound minimum: needed requests x latency / (concurrency x
workers), i.e. every request the APIs need, ``concurrency`` of them in flight in each worker
all the time, nothing but latency (each client has its own cap of ``concurrency``, but a run
reads Canvas, then reads PowerSchool, then writes PowerSchool). Canvas also throttles, by
token, as canvas-lms does (a leaky bucket: 600 units, draining 10 a second, each request
charged its cost): the phase prints what the throttle charged and the least time it allows,
(charged - 600) / 10 s, whatever the number of workers; a district's full read of 240,000
submissions costs about 1,500 units, so about 90 s. Memory is each worker's
VmHWM (``/proc/<pid>/status``) at the end of its phase; the store's size is the sum of
``pg_total_relation_size`` over the schema's tables before and after each phase. Also printed:
the runs' own phase clock (read_source, read_destination, plan, write_and_record), the CPU
seconds of the workers and each emulator, and how busy the machine's cores were (the
emulators, PostgreSQL and anything else on the machine share them with the workers).

    python3 bench/district.py [--sections 200 --students 30 --assignments 40 --latency-ms 20 --scale 1.0]

``--scale 0.1`` runs a tenth of the district (whole courses). Ctrl-C stops and removes
everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from passback.logs import configure_logging
from passback.sandbox.control import Sandbox
from passback.sandbox.district import Credentials, DistrictShape
from passback.services.connections import Route
from passback.services.engine import FINISHED, queue_courses, wait_for_runs
from passback.settings import Settings
from passback.store.connections import save_connection
from passback.store.db import Store, make_engine, migrate
from passback.testing.broker import Broker
from passback.vault import load_key
from passback.worker.app import EXECUTE, make_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from canvas_to_powerteacher import least_requests  # the sibling bench's count of a full sync

POSTGRES_URL = os.environ.get("PASSBACK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROUTE = Route("lms", "sis")
PER_PAGE = 100  # Canvas's and PowerSchool's page size, as the connectors ask for it
SCHOOL = 1  # the generated district has one school


def pages(items: int, per_page: int = PER_PAGE) -> int:
    """Requests a listing of ``items`` needs at the least: one per page, one for an empty listing."""
    return max(1, math.ceil(items / per_page))


# --- the fewest requests ---------------------------------------------------------------------------


def course_listings(canvas: dict[str, Any], course_id: int) -> int:
    """Canvas reads of a course besides its submissions: the course, sections, enrollments, groups, assignments."""
    def count(table: str, keep: Callable[[dict[str, Any]], bool] = lambda row: True) -> int:
        return sum(1 for row in canvas[table].values() if row["course_id"] == course_id and keep(row))

    return 1 + sum(pages(n) for n in (
        count("sections"),
        count("enrollments", lambda e: e["type"] == "StudentEnrollment" and e["enrollment_state"] == "active"),
        count("assignment_groups"),
        count("assignments"),
    ))


def powerschool_reads(canvas: dict[str, Any], powerschool: dict[str, Any], course_id: int) -> int:
    """What ``load_context`` reads for one course: each section and its roster, the count of the school's
    students (the list itself is read once: :func:`school_pages`), the teacher's categories (one teacher,
    one year), and one lookup of the sections' assignments."""
    sections = [powerschool["sections"][s["sis_section_id"]] for s in canvas["sections"].values()
                if s["course_id"] == course_id and s["sis_section_id"] in powerschool["sections"]]
    teachers = {(s["staff_id"], s["term_id"] // 100) for s in sections}
    return sum(1 + pages(len(s["students"])) for s in sections) + 1 + len(teachers) + 1


def school_pages(powerschool: dict[str, Any]) -> int:
    """The school's list of students, read once in a phase (a process keeps it while its count holds)."""
    return pages(sum(1 for s in powerschool["students"].values() if s["school_id"] == SCHOOL))


@dataclass(frozen=True)
class Needed:
    canvas: int
    powerschool_reads: int
    powerschool_writes: int

    @property
    def total(self) -> int:
        return self.canvas + self.powerschool_reads + self.powerschool_writes

    def describe(self) -> str:
        return (f"{self.total} (canvas {self.canvas} reads; powerschool {self.powerschool_reads} reads + "
                f"{self.powerschool_writes} writes)")


def needed_full(canvas: dict[str, Any], powerschool: dict[str, Any]) -> Needed:
    reads, writes = least_requests(canvas, per_page=PER_PAGE)  # includes the course listing
    ps_reads = sum(powerschool_reads(canvas, powerschool, c["id"]) for c in canvas["courses"].values())
    return Needed(reads, ps_reads + school_pages(powerschool), writes)


def needed_resync(canvas: dict[str, Any], powerschool: dict[str, Any],
                  changed: list[dict[str, Any]] | None = None) -> Needed:
    """A re-sync from the cursor: the listings, the two narrowed submissions listings, the PowerSchool
    reads, and one score batch per (assignment, section) with a regraded submission."""
    changed = changed or []
    in_course = Counter(canvas["assignments"][str(s["assignment_id"])]["course_id"] for s in changed)
    reads = pages(len(canvas["courses"]))
    ps_reads = school_pages(powerschool)
    for course in canvas["courses"].values():
        cid = course["id"]
        reads += course_listings(canvas, cid) + pages(in_course[cid]) + pages(0)  # graded_since, submitted_since
        ps_reads += powerschool_reads(canvas, powerschool, cid)
    section_of = {(e["course_id"], e["user_id"]): e["course_section_id"] for e in canvas["enrollments"].values()
                  if e["type"] == "StudentEnrollment"}
    touched = {(s["assignment_id"], section_of[(canvas["assignments"][str(s["assignment_id"])]["course_id"],
                                                 s["user_id"])]) for s in changed}
    return Needed(reads, ps_reads, len(touched))


# --- the parts: emulators, broker, store, workers --------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spread_grading_times(canvas: dict[str, Any], seed: int = 5, days: float = 28.0) -> None:
    """Each grade given at its own moment over the ``days`` before now, as teachers grade.

    The generator may stamp many grades with one ``graded_at`` (every grade, in some versions);
    a cursor re-reads what was graded within its lag (5 minutes) of the newest grade, which
    would be all of those. The scores and every other field stay as generated.
    """
    rng = random.Random(seed)
    latest = datetime.now(UTC) - timedelta(hours=1)
    for submission in canvas["submissions"].values():
        if submission["graded_at"] is None:
            continue
        stamp = (latest - timedelta(seconds=rng.uniform(0, days * 86400))).strftime("%Y-%m-%dT%H:%M:%SZ")
        submission["graded_at"] = stamp
        if submission["posted_at"] is not None:
            submission["posted_at"] = stamp


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, all cores, in clock ticks."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


SYSTEMS = ("canvas", "powerschool")


class Emulators:
    """The district in Canvas and PowerSchool, as separate processes, restartable on the district as generated.

    By default ``Sandbox.up`` starts them (``python -m passback.sandbox.serve``); those save their
    whole state to disk every second while it changes. ``quiet`` serves the same emulator apps,
    with the same latency, from this script with no state file instead (``--serve-emulator``).
    """

    def __init__(self, root: Path, shape: DistrictShape, latency_ms: float, *, spread: bool = True,
                 quiet: bool = False) -> None:
        self.sandbox = Sandbox(root)
        self.shape, self.latency_ms, self.spread, self.quiet = shape, latency_ms, spread, quiet
        self.pristine = root / "pristine"
        self.ports: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self.processes: list[subprocess.Popen] = []  # type: ignore[type-arg]

    def start(self) -> None:
        self.sandbox.create(self.shape)
        if self.spread:
            canvas = json.loads(self.sandbox.state_path("canvas").read_text())
            spread_grading_times(canvas)
            self.sandbox.state_path("canvas").write_text(json.dumps(canvas))
        self.pristine.mkdir(parents=True, exist_ok=True)
        for system in SYSTEMS:
            shutil.copy(self.sandbox.state_path(system), self.pristine / f"{system}.json")
        self.up()

    def up(self) -> None:
        if not self.quiet:
            info, _ = self.sandbox.up(self.shape, latency_ms=self.latency_ms)
            self.ports, self.pids = dict(info.ports), dict(info.pids)
            return
        for system in SYSTEMS:
            port = free_port()
            with open(self.sandbox.root / f"{system}.log", "ab") as log:  # the process keeps its own copy
                process = subprocess.Popen(
                    [sys.executable, __file__, "--serve-emulator", system, "--port", str(port),
                     "--state", str(self.pristine / f"{system}.json"), "--latency-ms", str(self.latency_ms)],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self.processes.append(process)
            self.ports[system], self.pids[system] = port, process.pid
        deadline = time.monotonic() + 120
        while not all(answers(self.url(s)) for s in SYSTEMS):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"the emulators did not start; see the logs in {self.sandbox.root}")
            time.sleep(0.2)

    def down(self) -> None:
        if not self.quiet:
            self.sandbox.down()
            return
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes = []

    def restart_fresh(self) -> None:
        """Down, the generated state back in place (whatever the syncs wrote is gone), up again."""
        self.down()
        for system in SYSTEMS:
            shutil.copy(self.pristine / f"{system}.json", self.sandbox.state_path(system))
        self.up()

    @property
    def creds(self) -> Credentials:
        info = self.sandbox.load()
        assert info is not None
        return info.creds

    def state(self, system: str) -> dict[str, Any]:
        return json.loads((self.pristine / f"{system}.json").read_text())

    def url(self, system: str) -> str:
        return f"http://127.0.0.1:{self.ports[system]}"

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each emulator's ``/_emulator/stats`` since it started: the requests it answered, by method and
        route; Canvas's also what its throttle charged (units) and how many requests it refused."""
        return {s: httpx.get(f"{self.url(s)}/_emulator/stats", timeout=60).json() for s in SYSTEMS}

    def throttle(self) -> dict[str, float]:
        """Canvas's bucket: its high water mark, outflow per second and up-front cost."""
        return httpx.get(f"{self.url('canvas')}/_emulator/throttle", timeout=60).json()

    def empty_canvas_bucket(self) -> None:
        """Canvas's throttle forgets every token's bucket: each phase starts as after a quiet night."""
        httpx.post(f"{self.url('canvas')}/_emulator/throttle", json={}, timeout=60).raise_for_status()

    def cpu(self) -> dict[str, float]:
        return {system: cpu_seconds(pid) for system, pid in self.pids.items()}

    def settle(self, after: float, timeout: float = 300) -> None:
        """Until Canvas saved the state it changed after ``after`` (Sandbox's emulators save once a
        second while their state changes, blocking their event loop: not while a phase is timed)."""
        if self.quiet:
            return
        state_file = self.sandbox.state_path("canvas")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if state_file.stat().st_mtime > after and not state_file.with_suffix(".tmp").exists():
                return
            time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_emulator/stats", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def serve_emulator(system: str, port: int, state_path: Path, latency_ms: float) -> None:
    """One emulator app with the district's state in memory only: nothing saved, ever (``--quiet-emulators``)."""
    import uvicorn

    from passback.emulators.faults import FaultConfig

    if system == "canvas":
        from passback.emulators.canvas import create_app
    else:
        from passback.emulators.powerschool import create_app
    app = create_app(state=json.loads(state_path.read_text()), faults=FaultConfig(latency_ms=latency_ms))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class PgStore:
    """A PostgreSQL store in a schema of its own; the URL the workers open it by."""

    def __init__(self) -> None:
        self.schema = f"bench_{uuid.uuid4().hex[:12]}"
        separator = "&" if "?" in POSTGRES_URL else "?"
        self.url = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{self.schema}"
        self.admin = make_engine(POSTGRES_URL)
        self.engine = make_engine(self.url)
        self.store = Store(self.engine)

    def create(self) -> None:
        with self.admin.begin() as db:
            db.execute(sa.text(f'create schema "{self.schema}"'))
        migrate(self.engine)

    def sizes(self) -> Counter[str]:
        """Bytes of each of the schema's tables, with its indexes and TOAST."""
        with self.admin.connect() as db:
            rows = db.execute(sa.text(
                "select tablename, pg_total_relation_size(format('%I.%I', schemaname, tablename)) "
                "from pg_tables where schemaname = :schema"), {"schema": self.schema}).all()
        return Counter({name: int(size) for name, size in rows})

    def settle(self) -> None:
        """VACUUM ANALYZE every table of the schema: what autovacuum does some time after a bulk load, done
        before a phase so the phase neither runs beside it nor on plans made from the empty tables' statistics."""
        with self.admin.connect() as db:
            names = db.execute(sa.text("select tablename from pg_tables where schemaname = :schema"),
                               {"schema": self.schema}).scalars().all()
        with self.admin.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            for name in names:
                db.execute(sa.text(f'vacuum analyze "{self.schema}"."{name}"'))

    def drop(self) -> None:
        self.engine.dispose()
        with self.admin.begin() as db:
            db.execute(sa.text(f'drop schema if exists "{self.schema}" cascade'))
        self.admin.dispose()


def connect(store: Store, settings: Settings, emulators: Emulators) -> None:
    """The route lms -> sis, as an admin saves it."""
    creds = emulators.creds
    key = load_key(settings)
    save_connection(store, key, name="lms", kind="canvas", base_url=emulators.url("canvas"),
                    credentials={"token": creds.canvas_token})
    save_connection(store, key, name="sis", kind="powerschool", base_url=emulators.url("powerschool"),
                    credentials={"client_id": creds.powerschool_client_id,
                                 "client_secret": creds.powerschool_client_secret})


class Workers:
    """``python3 -m passback worker`` processes over one store and one broker."""

    def __init__(self, count: int, env: dict[str, str], logs: Path, broker_url: str) -> None:
        self.count, self.env, self.logs, self.broker_url = count, env, logs, broker_url
        self.processes: list[subprocess.Popen] = []  # type: ignore[type-arg]

    def start(self) -> None:
        for index in range(self.count):
            with open(self.logs / f"worker-{index}-{time.time_ns()}.log", "ab") as log:
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "passback", "worker", "--loglevel", "WARNING"],
                    env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every worker answers a ping on the broker (each started consuming)."""
        control = make_app(Settings(broker_url=self.broker_url)).control
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if len(control.ping(timeout=0.5) or []) >= self.count:
                return
        raise RuntimeError(f"{self.count} worker(s) did not answer in {timeout:.0f} s; see {self.logs}")

    def check_alive(self) -> None:
        dead = [p.pid for p in self.processes if p.poll() is not None]
        if dead:
            raise RuntimeError(f"worker(s) {dead} exited; see the logs in {self.logs}")

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes)

    def peaks_kb(self) -> dict[int, int]:
        """Each worker's VmHWM (peak resident memory), in kB."""
        peaks = {}
        for process in self.processes:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[process.pid] = int(line.split()[1])
        return peaks

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes = []


def worker_env(data_dir: Path, database_url: str, broker_url: str, concurrency: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSBACK_")}
    env.update({"PASSBACK_DATA_DIR": str(data_dir), "PASSBACK_DATABASE_URL": database_url,
                "PASSBACK_BROKER_URL": broker_url, "PASSBACK_CONCURRENCY": str(concurrency)})
    return env


# --- regrading 1% in Canvas -------------------------------------------------------------------------


def pick_regrades(canvas: dict[str, Any], fraction: float, seed: int = 11) -> list[dict[str, Any]]:
    """A seeded sample of the graded submissions (a score, not excused), each with a new grade."""
    graded = sorted((s for s in canvas["submissions"].values()
                     if s["workflow_state"] == "graded" and s["score"] is not None and not s["excused"]),
                    key=lambda s: s["id"])
    chosen = random.Random(seed).sample(graded, max(1, round(len(graded) * fraction)))
    regrades = []
    for submission in chosen:
        assignment = canvas["assignments"][str(submission["assignment_id"])]
        if assignment["grading_type"] == "pass_fail":
            grade = "incomplete" if submission["grade"] == "complete" else "complete"
        else:
            score = submission["score"]
            grade = f"{score + 0.5 if score + 0.5 <= assignment['points_possible'] else score - 0.5:g}"
        regrades.append({**submission, "course_id": assignment["course_id"], "posted_grade": grade})
    return regrades


async def regrade(base_url: str, token: str, regrades: list[dict[str, Any]], concurrency: int = 8) -> None:
    """Each new grade saved as a teacher saves it (``PUT`` through the API), ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=60) as client:
        async def one(s: dict[str, Any]) -> None:
            path = f"/api/v1/courses/{s['course_id']}/assignments/{s['assignment_id']}/submissions/{s['user_id']}"
            async with gate:
                for _ in range(20):
                    response = await client.put(path, data={"submission[posted_grade]": s["posted_grade"]})
                    if response.status_code != 403:  # 403: Canvas's throttle; wait for the bucket to drain
                        break
                    await asyncio.sleep(1.0)
                response.raise_for_status()

        await asyncio.gather(*(one(s) for s in regrades))


# --- a phase -------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    workers: int
    needed: Needed
    runs: list[dict[str, Any]] = field(default_factory=list)
    wall: float = 0.0
    emulator: dict[str, Counter[str]] = field(default_factory=dict)
    peaks_kb: dict[int, int] = field(default_factory=dict)
    store_before: Counter[str] = field(default_factory=Counter)  # bytes by table
    store_after: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used in the phase, by process
    charged: float = 0.0  # units Canvas's throttle charged in the phase
    refused: int = 0  # requests Canvas's throttle answered 403 in the phase (each sent again later)
    bucket: dict[str, float] = field(default_factory=dict)  # Canvas's throttle settings
    machine_busy: float = 0.0  # share of the machine's cores busy during the phase (every process)

    def sent(self, system: str) -> int:
        return sum((r.get("stats") or {}).get("requests", {}).get(system, 0) for r in self.runs)

    @property
    def course_listing(self) -> int:
        return self.emulator["canvas"]["GET /api/v1/courses"]

    @property
    def sent_total(self) -> int:
        """The runs' requests and the course listing ``queue_courses`` made."""
        return self.sent("canvas") + self.sent("powerschool") + self.course_listing

    @property
    def growth(self) -> int:
        """Bytes the store grew by in the phase."""
        return self.store_after.total() - self.store_before.total()

    def bound(self, requests: int, latency_ms: float, concurrency: int) -> float:
        return requests * latency_ms / 1000 / (concurrency * self.workers)

    @property
    def throttle_bound(self) -> float:
        """The least time Canvas's throttle lets these reads take, however many workers: the bucket starts
        empty, holds ``hwm`` units, and drains ``outflow`` a second; the reads cost what it charged."""
        if not self.bucket:
            return 0.0
        return max(0.0, self.charged - self.bucket["hwm"]) / self.bucket["outflow"]


def run_phase(phase: Phase, *, store: PgStore, settings: Settings, emulators: Emulators, broker: Broker,
              logs: Path, concurrency: int, timeout: float) -> Phase:
    workers = Workers(phase.workers, worker_env(settings.data_dir, store.url, broker.url, concurrency), logs,
                      broker.url)
    sender = make_app(Settings(broker_url=broker.url))
    try:
        store.settle()
        workers.start()
        emulators.empty_canvas_bucket()
        phase.bucket = emulators.throttle()
        before = emulators.stats()
        phase.store_before = store.sizes()
        cpu_before, workers_before, busy_before = emulators.cpu(), workers.cpu(), machine_busy()
        started = datetime.now(UTC)
        run_ids = asyncio.run(queue_courses(store.store, settings, ROUTE, all_courses=True,
                                            dispatch=lambda run_id: sender.send_task(EXECUTE, args=[run_id])))
        phase.runs = wait_all(store.store, run_ids, workers, timeout)
        phase.wall = (last_finish(phase.runs) - started).total_seconds()
        busy_after = machine_busy()
        phase.machine_busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
        phase.cpu = {"workers": workers.cpu() - workers_before,
                     **{f"{s} emulator": v - cpu_before[s] for s, v in emulators.cpu().items()}}
        phase.peaks_kb = workers.peaks_kb()
        after = emulators.stats()
        phase.emulator = {s: Counter(after[s]["requests"]) - Counter(before[s]["requests"]) for s in after}
        phase.charged = after["canvas"]["charged"] - before["canvas"]["charged"]
        phase.refused = after["canvas"]["throttled"] - before["canvas"]["throttled"]
        phase.store_after = store.sizes()
    finally:
        workers.stop()
    return phase


def last_finish(runs: list[dict[str, Any]]) -> datetime:
    """When the last run ended, by its worker's clock (the store keeps it), not by when polling saw it."""
    moments = [r["finished_at"] for r in runs]
    return max(m if m.tzinfo else m.replace(tzinfo=UTC) for m in moments)


def wait_all(store: Store, run_ids: list[str], workers: Workers, timeout: float) -> list[dict[str, Any]]:
    """``wait_for_runs`` in slices, checking between them that no worker died. A slow poll: a poll
    reads every run, and the bench shares the machine's cores with what it measures."""
    deadline = time.monotonic() + timeout
    while True:
        rows = asyncio.run(wait_for_runs(store, run_ids, timeout=5, poll=1.0))
        if all(r["status"] in FINISHED for r in rows):
            return rows
        workers.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"runs not finished after {timeout:.0f} s: "
                               f"{Counter(r['status'] for r in rows)}")


# --- printing ------------------------------------------------------------------------------------------


def kb(n: float) -> str:
    return f"{n / 1024:,.0f} KB" if abs(n) < 10 * 1024 * 1024 else f"{n / 1024 / 1024:,.1f} MB"


def phase_means(runs: list[dict[str, Any]]) -> str:
    """The run's own phase clock (read_source, read_destination, plan, write_and_record, ...) averaged over runs."""
    totals: Counter[str] = Counter()
    for r in runs:
        stats = r.get("stats") or {}
        totals.update({"run": stats.get("seconds", 0.0), **(stats.get("phases") or {})})
    return ", ".join(f"{name} {value / max(1, len(runs)):.2f}" for name, value in totals.items())


def between_runs(runs: list[dict[str, Any]]) -> float:
    """Mean seconds from one run's end to the same worker's next run's claim (the engine's and the lease's own time)."""
    by_process: dict[Any, list[dict[str, Any]]] = {}
    for r in runs:
        if r.get("started_at") and r.get("finished_at"):
            by_process.setdefault((r.get("stats") or {}).get("process"), []).append(r)
    gaps = []
    for rows in by_process.values():
        rows.sort(key=lambda r: r["started_at"])
        gaps += [(b["started_at"] - a["finished_at"]).total_seconds() for a, b in zip(rows, rows[1:])]
    return sum(gaps) / len(gaps) if gaps else 0.0


def report(phase: Phase, latency_ms: float, concurrency: int) -> None:
    statuses = Counter(r["status"] for r in phase.runs)
    reads = Counter((r.get("stats") or {}).get("read", "?") for r in phase.runs)
    processes = {(r.get("stats") or {}).get("process") for r in phase.runs}
    counts = Counter()
    for r in phase.runs:
        counts.update({k: v for k, v in (r.get("counts") or {}).items() if v})
    tokens = phase.emulator["powerschool"]["POST /oauth/access_token"]
    needed = phase.needed.total
    bound = phase.bound(needed, latency_ms, concurrency)
    print(f"\n== {phase.name} ({phase.workers} worker{'s' if phase.workers > 1 else ''}) ==")
    print(f"runs: {dict(statuses)}; reads: {dict(reads)}; worker processes used: {len(processes)}; "
          f"scores: {dict(counts)}")
    print(f"requests sent (runs' stats): canvas {phase.sent('canvas')}, powerschool {phase.sent('powerschool')}; "
          f"+ {phase.course_listing} course listing (queue_courses) = {phase.sent_total}")
    print(f"requests the emulators counted: canvas {sum(phase.emulator['canvas'].values())}, powerschool "
          f"{sum(phase.emulator['powerschool'].values())} (of which {tokens} OAuth token requests)")
    print(f"fewest the APIs need: {phase.needed.describe()}; sent/needed {phase.sent_total / needed:.2f}")
    print(f"wall {phase.wall:.1f} s; latency-bound minimum {bound:.1f} s = {needed} needed x {latency_ms:g} ms / "
          f"({concurrency} concurrency x {phase.workers} worker{'s' if phase.workers > 1 else ''}); "
          f"wall/bound {phase.wall / bound:.2f} (bound with the requests sent: "
          f"{phase.bound(phase.sent_total, latency_ms, concurrency):.1f} s)")
    if phase.bucket:
        limit = phase.throttle_bound
        print(f"Canvas's throttle: charged {phase.charged:,.1f} units (hwm {phase.bucket['hwm']:g}, outflow "
              f"{phase.bucket['outflow']:g}/s, {phase.bucket['up_front']:g} up front per request in flight), "
              f"refused {phase.refused} requests (403, each sent again); the least time it allows these reads: "
              f"{limit:.1f} s = ({phase.charged:,.1f} - {phase.bucket['hwm']:g}) / {phase.bucket['outflow']:g}"
              + (f"; wall/throttle bound {phase.wall / limit:.2f}" if limit else ""))
    print(f"where a run's time went (mean s per run): {phase_means(phase.runs)}; workers busy "
          f"{sum((r.get('stats') or {}).get('seconds', 0) for r in phase.runs) / (phase.wall * phase.workers):.0%} "
          f"of the wall time; {between_runs(phase.runs) * 1000:.0f} ms from a run's end to its worker's next run")
    print("CPU seconds in the phase: " + ", ".join(f"{name} {value:.1f}" for name, value in phase.cpu.items())
          + f"; the machine's {os.cpu_count()} cores {phase.machine_busy:.0%} busy (every process on it)")
    print("peak memory (VmHWM): " + ", ".join(f"worker pid {pid} {peak / 1024:.1f} MB"
                                              for pid, peak in sorted(phase.peaks_kb.items())))
    growth = phase.growth
    grew = sorted(((phase.store_after[t] - phase.store_before[t], t) for t in phase.store_after), reverse=True)[:3]
    print(f"store: {kb(phase.store_before.total())} -> {kb(phase.store_after.total())} "
          f"({'+' if growth >= 0 else ''}{kb(growth)}; {kb(growth / max(1, len(phase.runs)))} per course run; "
          f"most in {', '.join(f'{t} +{kb(n)}' for n, t in grew if n > 0) or 'no table'})")


def goals(baseline: Phase, one: Phase, two: Phase, unchanged: Phase, changed: Phase,
          latency_ms: float, concurrency: int) -> None:
    def line(met: bool, text: str) -> None:
        print(f"[{'met' if met else 'NOT MET'}] {text}")

    print("\n== goals ==")
    for full in (one, two):
        bound = full.bound(full.needed.total, latency_ms, concurrency)
        line(full.wall <= 1.3 * bound, f"full sync with {full.workers} worker(s) <= 1.3 x its latency-bound minimum: "
                                       f"{full.wall:.1f} s vs 1.3 x {bound:.1f} s = {1.3 * bound:.1f} s "
                                       f"({full.wall / bound:.2f} x)")
        floor = max(bound, full.throttle_bound)
        print(f"      (not a goal: the larger of that and Canvas's throttle bound is {floor:.1f} s; "
              f"wall/that {full.wall / floor:.2f} x)")
    ratio = unchanged.sent_total / unchanged.needed.total
    line(ratio <= 1.1, f"unchanged re-sync <= 1.1 x the requests the cursor needs: {unchanged.sent_total} vs "
                       f"{unchanged.needed.total} ({ratio:.2f} x)")
    share = unchanged.wall / two.wall
    line(share <= 0.05, f"unchanged re-sync <= 5% of the full sync's time (2 workers): {unchanged.wall:.1f} s vs "
                        f"{two.wall:.1f} s ({share:.1%})")
    ratio = changed.sent_total / changed.needed.total
    line(ratio <= 1.1, f"1% changed <= 1.1 x its request minimum: {changed.sent_total} vs {changed.needed.total} "
                       f"({ratio:.2f} x)")
    small, large = max(baseline.peaks_kb.values()), max(one.peaks_kb.values())
    line(large <= 1.2 * small, f"memory at 100% <= 1.2 x at 10% (peak worker, full sync, 1 worker): "
                               f"{large / 1024:.1f} MB vs {small / 1024:.1f} MB ({large / small:.2f} x)")
    growth = unchanged.growth
    line(growth <= 100 * 1024, f"an unchanged run adds <= 100 KB to the store: {kb(growth)} for the district's "
                               f"re-sync ({kb(growth / max(1, len(unchanged.runs)))} per course run)")
    speedup = one.wall / two.wall
    line(speedup >= 1.8, f"speedup with 2 workers >= 1.8: {speedup:.2f}")


# --- main ----------------------------------------------------------------------------------------------


def source_fingerprint() -> str:
    """A digest of passback's source as this run found it: the workers import it afresh in each phase."""
    import hashlib

    import passback

    digest = hashlib.sha256()
    for path in sorted(Path(passback.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def shape_of(args: argparse.Namespace, scale: float) -> DistrictShape:
    courses = max(1, round(args.sections * scale / args.sections_per_course))
    return DistrictShape(courses=courses, sections=args.sections_per_course, students=args.students,
                         assignments=args.assignments, seed=7, broken=False)


def describe(shape: DistrictShape) -> str:
    sections = shape.courses * shape.sections
    return (f"{shape.courses} courses x {shape.sections} sections = {sections} sections x {shape.students} students "
            f"x {shape.assignments} assignments = {sections * shape.students * shape.assignments:,} scores")


@contextlib.contextmanager
def district(root: Path, shape: DistrictShape, args: argparse.Namespace) -> Iterator[Emulators]:
    emulators = Emulators(root, shape, args.latency_ms, spread=not args.as_generated, quiet=args.quiet_emulators)
    try:
        emulators.start()
        yield emulators
    finally:
        emulators.down()


@contextlib.contextmanager
def fresh_store(settings: Settings, emulators: Emulators) -> Iterator[PgStore]:
    store = PgStore()
    try:
        store.create()
        connect(store.store, settings, emulators)
        yield store
    finally:
        store.drop()


def bench(args: argparse.Namespace, tmp: Path) -> None:
    def settings_for(store: PgStore) -> Settings:
        return Settings(data_dir=tmp, database_url=store.url, broker_url=broker.url, concurrency=args.concurrency)

    keys = Settings(data_dir=tmp)  # where the credentials key is, for the workers too
    logs = tmp / "worker-logs"
    logs.mkdir()
    broker = Broker()
    broker.start()
    try:
        common = {"broker": broker, "logs": logs, "concurrency": args.concurrency, "timeout": args.timeout}
        full_shape, small_shape = shape_of(args, args.scale), shape_of(args, args.scale * 0.1)
        print(f"district: {describe(full_shape)}; latency {args.latency_ms:g} ms on every request; "
              f"PASSBACK_CONCURRENCY={args.concurrency} (requests in flight per system per run); "
              f"memory baseline: {describe(small_shape)}; grading times "
              f"{'as generated (one moment)' if args.as_generated else 'spread over the 28 days before now'}; "
              f"emulators: {'served by this script, no state file' if args.quiet_emulators else 'Sandbox.up'}",
              flush=True)
        fingerprint = source_fingerprint()
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start "
              f"(every process on it, this bench's and others'); passback source {fingerprint}", flush=True)

        with district(tmp / "small", small_shape, args) as emulators, \
                fresh_store(keys, emulators) as store:
            baseline = Phase("0. memory baseline: 10% of the district, full sync", 1,
                             needed_full(emulators.state("canvas"), emulators.state("powerschool")))
            run_phase(baseline, store=store, settings=settings_for(store), emulators=emulators,
                      **common)
            report(baseline, args.latency_ms, args.concurrency)

        with district(tmp / "full", full_shape, args) as emulators:
            canvas, powerschool = emulators.state("canvas"), emulators.state("powerschool")
            with fresh_store(keys, emulators) as store:
                one = run_phase(Phase("a. full sync", 1, needed_full(canvas, powerschool)), store=store,
                                settings=settings_for(store), emulators=emulators, **common)
                report(one, args.latency_ms, args.concurrency)
            emulators.restart_fresh()
            with fresh_store(keys, emulators) as store:
                settings = settings_for(store)
                two = run_phase(Phase("b. full sync", 2, needed_full(canvas, powerschool)), store=store,
                                settings=settings, emulators=emulators, **common)
                report(two, args.latency_ms, args.concurrency)
                unchanged = run_phase(Phase("c. re-sync, nothing changed", 2, needed_resync(canvas, powerschool)),
                                      store=store, settings=settings, emulators=emulators, **common)
                report(unchanged, args.latency_ms, args.concurrency)

                regrades = pick_regrades(canvas, args.changed)
                clock = time.perf_counter()
                asyncio.run(regrade(emulators.url("canvas"), emulators.creds.canvas_token, regrades))
                emulators.settle(time.time())
                print(f"\n(regraded {len(regrades)} of the graded submissions through PUT .../submissions/:user_id "
                      f"in {time.perf_counter() - clock:.1f} s, not timed)")
                changed = run_phase(Phase(f"d. re-sync, {args.changed:.0%} of the scores changed", 2,
                                          needed_resync(canvas, powerschool, regrades)),
                                    store=store, settings=settings, emulators=emulators, **common)
                report(changed, args.latency_ms, args.concurrency)

        goals(baseline, one, two, unchanged, changed, args.latency_ms, args.concurrency)
        now = source_fingerprint()
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f}; passback source {now}"
              + ("" if now == fingerprint else " (CHANGED during the run: the phases ran different code)"))
        print(f"speedup 2 workers: {one.wall / two.wall:.2f}")
    finally:
        broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", type=int, default=200)
    parser.add_argument("--sections-per-course", type=int, default=4)
    parser.add_argument("--students", type=int, default=30, help="per section")
    parser.add_argument("--assignments", type=int, default=40, help="per course")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--scale", type=float, default=1.0, help="the share of the district's courses to run")
    parser.add_argument("--concurrency", type=int, default=8, help="PASSBACK_CONCURRENCY of the workers")
    parser.add_argument("--changed", type=float, default=0.01, help="share of graded submissions regraded in d")
    parser.add_argument("--as-generated", action="store_true",
                        help="keep the generator's grading times (every grade at one moment) instead of spreading them")
    parser.add_argument("--quiet-emulators", action="store_true",
                        help="serve the emulator apps from this script with no state file, instead of Sandbox.up's "
                             "processes (which save their whole state every second while it changes)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds a phase may take")
    parser.add_argument("--serve-emulator", choices=SYSTEMS, help=argparse.SUPPRESS)  # the quiet emulators' processes
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator:
        serve_emulator(args.serve_emulator, args.port, args.state, args.latency_ms)
        return
    configure_logging()

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background (SIGINT ignored)
    with tempfile.TemporaryDirectory(prefix="passback-bench-") as tmp:
        try:
            bench(args, Path(tmp))
        except KeyboardInterrupt:
            print("\ninterrupted: stopped the workers, the broker and the emulators, and dropped the schema",
                  file=sys.stderr)
            raise SystemExit(130) from None


if __name__ == "__main__":
    main()
