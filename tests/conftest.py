"""Shared fixtures: real stores (SQLite and PostgreSQL), real emulators on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog
import uvicorn

from passback.emulators import canvas as canvas_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.emulators import schoology as schoology_emulator
from passback.emulators.faults import FaultConfig
from passback.sandbox.district import Credentials, DistrictShape, generate, schoology_from_canvas
from passback.store.db import Store, make_engine, migrate

POSTGRES_URL = os.environ.get("PASSBACK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("PASSBACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """The CLI run in process configures structlog (WARNING and up, filtered before any processor); a test
    after it that captures info events would see none. Each test starts from structlog's defaults."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _postgres_ready() -> bool:
    try:
        engine = make_engine(POSTGRES_URL)
        with engine.connect() as db:
            db.execute(sa.text("select 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The local PostgreSQL; started if it is down, a failure (never a skip) if it cannot be."""
    if not _postgres_ready():
        versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else []
        for version in versions:
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                           check=False, capture_output=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _postgres_ready():
            time.sleep(0.5)
    if not _postgres_ready():
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}; the store tests need it.")
    return POSTGRES_URL


def _redis_ready() -> bool:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The local Redis; started if it is down, a failure (never a skip) if it cannot be."""
    if not _redis_ready():
        try:
            subprocess.run(["redis-server", "--daemonize", "yes", "--save", "", "--dir", tempfile.gettempdir()],
                           check=False, capture_output=True)
        except OSError:
            pass  # no redis-server here: the failure below says what is missing
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _redis_ready():
            time.sleep(0.2)
    if not _redis_ready():
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (PASSBACK_TEST_REDIS_URL), and `redis-server --daemonize yes` "
                    "did not start it; the shared-limits tests need a real Redis.")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of the test's own; every key under it is deleted afterwards."""
    import redis

    prefix = f"passback-test:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _postgres_store(url: str) -> Iterator[Store]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as db:
        db.execute(sa.text(f'create schema "{schema}"'))
    separator = "&" if "?" in url else "?"
    engine = make_engine(f"{url}{separator}options=-csearch_path%3D{schema}")
    migrate(engine)
    try:
        yield Store(engine)
    finally:
        engine.dispose()
        with admin.begin() as db:
            db.execute(sa.text(f'drop schema "{schema}" cascade'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The store on both databases passback supports."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
        migrate(engine)
        yield Store(engine)
        engine.dispose()
    else:
        yield from _postgres_store(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(engine)
    yield Store(engine)
    engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServedApp:
    """An ASGI app under uvicorn in a background thread: real HTTP on loopback."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        if body is None:
            return httpx.get(f"{self.url}/_emulator/{path}").json()
        return httpx.post(f"{self.url}/_emulator/{path}", json=body).json()

    @property
    def state(self) -> dict[str, Any]:
        return self.app.state.emulator.state

    @property
    def writes(self) -> list[Any]:
        """Every write the emulator accepted (``AcceptedWrite``), in order."""
        return self.app.state.writes

    @property
    def faults(self) -> FaultConfig:
        return self.app.state.faults


@dataclass
class District:
    canvas: ServedApp
    powerschool: ServedApp
    credentials: Credentials
    shape: DistrictShape


SMALL = DistrictShape(courses=2, sections=2, students=6, assignments=6, seed=11)


@pytest.fixture
def district() -> Iterator[District]:
    canvas_state, ps_state, credentials = generate(SMALL)
    canvas_faults, ps_faults = FaultConfig(seed=1), FaultConfig(seed=2)
    with ServedApp(canvas_emulator.create_app(canvas_state, faults=canvas_faults)) as canvas, \
            ServedApp(powerschool_emulator.create_app(ps_state, faults=ps_faults)) as powerschool:
        yield District(canvas, powerschool, credentials, SMALL)


SCHOOLOGY_KEY, SCHOOLOGY_SECRET = "sandbox-schoology", "sandbox-schoology-secret"


@dataclass
class SchoologyDistrict:
    schoology: ServedApp
    powerschool: ServedApp
    credentials: Credentials
    canvas_state: dict[str, Any]


@pytest.fixture
def schoology_district() -> Iterator[SchoologyDistrict]:
    canvas_state, ps_state, credentials = generate(SMALL)
    state = schoology_from_canvas(canvas_state, SCHOOLOGY_KEY, SCHOOLOGY_SECRET)
    with ServedApp(schoology_emulator.create_app(state, faults=FaultConfig(seed=3), rate_limit=1000)) as schoology, \
            ServedApp(powerschool_emulator.create_app(ps_state, faults=FaultConfig(seed=4))) as powerschool:
        yield SchoologyDistrict(schoology, powerschool, credentials, canvas_state)
