"""Seeded fault trials of the task engine, shared by the test suite and ``bench/fault_trials.py``.

A trial is a function of its seed: the district generated, the faults the emulators
inject (429, 500, timeouts and resets on a share of requests, drawn per request from the
seed), and what befalls the engine while the district syncs:

* ``faults``: only the emulators' faults;
* ``kill``: a worker is SIGKILLed while a run is in flight, and another started;
* ``broker``: the broker restarts while runs are queued and in flight (its queue is lost;
  the beat hands the store's queued runs to the workers again);
* ``race``: every course is queued twice at once, so two workers race for each.

After each trial, PowerTeacher Pro holds what Canvas says (nothing lost, nothing on the
wrong student) and each assignment was created by one accepted write (nothing doubled).
A failing seed is replayed with ``python3 bench/fault_trials.py --seed N``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from passback.emulators import canvas as canvas_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.faults import FaultConfig
from passback.sandbox.district import DistrictShape, generate
from passback.services.connections import Route
from passback.services.engine import queue_courses, wait_for_runs
from passback.settings import Settings
from passback.store.connections import save_connection
from passback.store.db import Store
from passback.store.history import get_run
from passback.testing.writes import assignment_creates
from passback.vault import load_key
from tests.conftest import ServedApp
from tests.e2e.expected import expected_destination_scores, held_destination_scores
from tests.engine.conftest import Broker, Workers

SCENARIOS = ("faults", "kill", "broker", "race")
FAULT_RATE = 0.12
FAULT_KINDS = ("429", "500", "timeout", "reset")


@dataclass
class TrialResult:
    seed: int
    scenario: str
    runs: int
    seconds: float
    injected: dict[str, int]


def _running(store: Store, run_ids: list[str]) -> bool:
    return any((get_run(store, r) or {}).get("status") == "running" for r in run_ids)


def _await(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def run_trial(seed: int, store: Store, settings: Settings, broker: Broker, workers: Workers,
              dispatch: Callable[[str], None]) -> TrialResult:
    rng = random.Random(seed)
    scenario = SCENARIOS[seed % len(SCENARIOS)]
    shape = DistrictShape(courses=rng.choice((2, 3)), sections=rng.choice((1, 2)), students=rng.randint(3, 6),
                          assignments=rng.randint(2, 4), seed=seed, broken=False)
    canvas_state, ps_state, credentials = generate(shape)
    faults = {"fault_rate": FAULT_RATE, "fault_kinds": FAULT_KINDS, "timeout_seconds": 1.5, "latency_ms": 15.0}
    started = time.monotonic()
    with ExitStack() as stack:
        canvas = stack.enter_context(ServedApp(canvas_emulator.create_app(
            canvas_state, faults=FaultConfig(seed=seed, **faults))))
        powerschool = stack.enter_context(ServedApp(powerschool_emulator.create_app(
            ps_state, faults=FaultConfig(seed=seed + 1, **faults))))
        key = load_key(settings)
        lms, sis = f"lms-{seed}", f"sis-{seed}"
        save_connection(store, key, name=lms, kind="canvas", base_url=canvas.url,
                        credentials={"token": credentials.canvas_token})
        save_connection(store, key, name=sis, kind="powerschool", base_url=powerschool.url,
                        credentials={"client_id": credentials.powerschool_client_id,
                                     "client_secret": credentials.powerschool_client_secret})
        rounds = 2 if scenario == "race" else 1
        run_ids: list[str] = []
        for _ in range(rounds):
            run_ids += asyncio.run(queue_courses(store, settings, Route(lms, sis), all_courses=True,
                                                 dispatch=dispatch, actor=f"trial-{seed}"))
        if scenario == "kill":
            _await(lambda: _running(store, run_ids), 30)
            victim = rng.choice([p for p in workers.processes if p.poll() is None])
            had_beat = "--beat" in victim.args  # type: ignore[operator]
            workers.kill(victim)
            workers.processes.remove(victim)
            workers.start(1, beat=had_beat)
        elif scenario == "broker":
            _await(lambda: _running(store, run_ids), 30)
            broker.restart()
        rows = asyncio.run(wait_for_runs(store, run_ids, timeout=120, poll=0.2))
        problems = [(r["id"][:8], r["status"], r.get("failure")) for r in rows
                    if r["status"] not in ("succeeded", "completed_with_errors")]
        assert not problems, f"seed {seed} ({scenario}): runs did not end well: {problems}"
        if scenario == "race":  # the two runs of a course: one wrote it, the other found it done
            writers: dict[str, int] = {}
            for row in rows:
                if row["counts"]["created"]:
                    writers[row["course_id"]] = writers.get(row["course_id"], 0) + 1
            assert all(n == 1 for n in writers.values()) and len(writers) == shape.courses, writers
        expected = expected_destination_scores(canvas_state, ps_state)
        held = held_destination_scores(ps_state)
        assert held == expected, (f"seed {seed} ({scenario}): lost {sorted(set(expected) - set(held))[:5]}, "
                                  f"extra {sorted(set(held) - set(expected))[:5]}, "
                                  f"different {[k for k in expected if k in held and held[k] != expected[k]][:5]}")
        creates = assignment_creates(powerschool.app.state.writes)
        kept = {(a["_assignmentsections"][0]["name"],
                 tuple(sorted(str(s["sectionsdcid"]) for s in a["_assignmentsections"])))
                for a in ps_state["assignments"].values()}
        assert set(creates) == kept, f"seed {seed} ({scenario}): assignments held differ from those created"
        doubled = {k: n for k, n in creates.items() if n > 1}
        assert not doubled, f"seed {seed} ({scenario}): created more than once: {doubled}"
        injected: dict[str, Any] = {}
        for served in (canvas, powerschool):
            for kind, n in served.app.state.faults.injected.items():
                injected[kind] = injected.get(kind, 0) + n
    return TrialResult(seed, scenario, len(run_ids), round(time.monotonic() - started, 2), injected)
