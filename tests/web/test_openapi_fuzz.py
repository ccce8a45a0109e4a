"""schemathesis against passback's own /openapi.json, over real HTTP: no 5xx, and every answer matches the schema.

The API is served as a district runs it (emulated Canvas and PowerSchool behind it) and
called with an admin's API token, so generated requests reach the services rather than
stopping at sign-in. Hypothesis's examples are seeded (derandomized): a failure replays.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from passback.emulators import canvas as canvas_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.faults import FaultConfig
from passback.sandbox.district import generate
from passback.services import accounts
from passback.settings import Settings
from passback.store.db import Store, make_engine, migrate
from passback.web.app import create_app
from tests.conftest import SMALL, District, ServedApp
from tests.web.conftest import PASSWORD, save_district_connections


COURSES = generate(SMALL)[0]["courses"]


@pytest.fixture(scope="module")
def served_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp: Path = tmp_path_factory.mktemp("api")
    canvas_state, ps_state, credentials = generate(SMALL)
    settings = Settings(data_dir=tmp, lease_seconds=30)
    settings.ensure_data_dir()
    engine = make_engine(f"sqlite:///{tmp / 'passback.db'}")
    migrate(engine)
    store = Store(engine)
    with ServedApp(canvas_emulator.create_app(canvas_state, faults=FaultConfig(seed=1))) as canvas, \
            ServedApp(powerschool_emulator.create_app(ps_state, faults=FaultConfig(seed=2))) as powerschool:
        save_district_connections(store, settings, District(canvas, powerschool, credentials, SMALL))
        admin = accounts.add_user(store, username="admin", password=PASSWORD, is_admin=True)
        token = accounts.issue_token(store, user_id=admin["id"], name="schemathesis")
        with ServedApp(create_app(settings, store, scheduler=False)) as app:
            yield app.url, token  # background syncs end with the server: its lifespan waits for them
    engine.dispose()


@pytest.fixture(scope="module")
def api_schema(served_api: tuple[str, str]) -> schemathesis.BaseSchema:
    url, _ = served_api
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
def test_api_answers_as_described(case: schemathesis.Case, served_api: tuple[str, str]) -> None:
    url, token = served_api
    params = case.path_parameters or {}
    if "course_id" in params:  # a real course, so the queries and bodies generated reach the services
        params["source"], params["course_id"] = "sandbox-canvas", str(min(int(c) for c in COURSES))
    case.call_and_validate(base_url=url, headers={"Authorization": f"Bearer {token}"})
