"""Real task-engine parts for the tests: a Redis of the tests' own (so it can be restarted), worker
processes started with ``passback worker``, and a PostgreSQL store they share with the test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from passback.settings import Settings
from passback.store.db import Store, make_engine, migrate
from passback.testing.broker import Broker


@pytest.fixture
def broker() -> Iterator[Broker]:
    found = Broker()
    found.start()
    yield found
    found.stop()


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[tuple[Store, str]]:
    """A PostgreSQL store in a schema of the test's own, and the URL the workers open it by."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(postgres_url)
    with admin.begin() as db:
        db.execute(sa.text(f'create schema "{schema}"'))
    separator = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    migrate(engine)
    try:
        yield Store(engine), url
    finally:
        engine.dispose()
        with admin.begin() as db:
            db.execute(sa.text(f'drop schema "{schema}" cascade'))
        admin.dispose()


def _signal_group(process: subprocess.Popen, sig: int) -> None:  # type: ignore[type-arg]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


@dataclass
class Workers:
    """``passback worker`` processes over one store and one broker."""

    env: dict[str, str]
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)  # type: ignore[type-arg]

    def start(self, count: int = 1, *, beat: bool = False) -> list[subprocess.Popen]:  # type: ignore[type-arg]
        started = []
        for _ in range(count):
            index = len(self.processes)
            log = open(self.logs / f"worker-{index}.log", "ab")  # noqa: SIM115 - the process keeps it
            args = [sys.executable, "-m", "passback", "worker", "--loglevel", "WARNING"]
            if beat:
                args.append("--beat")
            # A session of its own: the worker's embedded beat is a child process, killed with it.
            process = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self.processes.append(process)
            started.append(process)
        return started

    def kill(self, process: subprocess.Popen) -> None:  # type: ignore[type-arg]
        """SIGKILL to the worker and its children: no cleanup, no acknowledgement, the task goes back to the broker."""
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes:
            _signal_group(process, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
            _signal_group(process, signal.SIGKILL)  # a child left behind (the beat) goes too

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("worker-*.log")))


def engine_env(settings: Settings, database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSBACK_")}
    env.update({"PASSBACK_DATA_DIR": str(settings.data_dir), "PASSBACK_DATABASE_URL": database_url,
                "PASSBACK_BROKER_URL": broker_url, "PASSBACK_LEASE_SECONDS": "3",
                "PASSBACK_TASK_VISIBILITY_SECONDS": "6", "PASSBACK_REQUEUE_SECONDS": "2",
                "PASSBACK_SCHEDULER_SECONDS": "1", "PASSBACK_CONCURRENCY": "4", **extra})
    return env


@pytest.fixture
def workers_for(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    made: list[Workers] = []

    def make(env: dict[str, str]) -> Workers:
        logs = tmp_path / "worker-logs"
        logs.mkdir(exist_ok=True)
        found = Workers(env, logs)
        made.append(found)
        return found

    yield make
    for found in made:
        found.stop()
