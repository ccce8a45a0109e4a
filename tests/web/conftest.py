"""The web product served for real: passback's app under uvicorn beside emulated Canvas and PowerSchool.

Three people: an admin who signs in with a password, teacher A assigned the district's
first course, teacher B assigned the second. Each gets a real session cookie (a signed
cookie from signing in), so the tests see what a browser sees.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from passback.services import accounts
from passback.services import connections as connection_service
from passback.services.district import update_district
from passback.settings import Settings
from passback.store.db import Store, make_engine, migrate
from passback.web.app import create_app
from tests.conftest import District, ServedApp

PASSWORD = "correct horse battery staple"
SOURCE, DESTINATION = "sandbox-canvas", "sandbox-powerteacher"


@dataclass
class Web:
    app: ServedApp
    store: Store
    settings: Settings
    district: District
    courses: list[str]  # the district's course ids, in order: teacher A has the first, teacher B the second

    @property
    def url(self) -> str:
        return self.app.url

    def client(self, username: str | None = None) -> httpx.Client:
        """A client with the session of ``username`` (signed in through the login form), or none."""
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=60)
        if username is not None:
            sign_in(client, username)
        return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def sign_in(client: httpx.Client, username: str, password: str = PASSWORD) -> None:
    page = client.get("/login")
    answer = client.post("/login", data={"username": username, "password": password, "next": "/courses",
                                         "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 303, answer.text


def save_district_connections(store: Store, settings: Settings, district: District) -> None:
    creds = district.credentials
    connection_service.save(store, settings, name=SOURCE, kind="canvas", url=district.canvas.url,
                            credentials={"token": creds.canvas_token})
    connection_service.save(store, settings, name=DESTINATION, kind="powerschool", url=district.powerschool.url,
                            credentials={"client_id": creds.powerschool_client_id,
                                         "client_secret": creds.powerschool_client_secret})
    update_district(store, settings, {"routes": [{"source": SOURCE, "destination": DESTINATION}]}, actor="test")


@pytest.fixture
def web(district: District, tmp_path: Path) -> Iterator[Web]:
    settings = Settings(data_dir=tmp_path, secret_key=None, lease_seconds=30)
    settings.ensure_data_dir()
    engine = make_engine(f"sqlite:///{tmp_path / 'passback.db'}")
    migrate(engine)
    store = Store(engine)
    save_district_connections(store, settings, district)
    course_ids = sorted(str(c) for c in district.canvas.state["courses"])
    source_id = accounts.source_connection_id(store, SOURCE)
    accounts.add_user(store, username="admin", password=PASSWORD, is_admin=True, display_name="District Admin")
    for username, course in (("teacher-a", course_ids[0]), ("teacher-b", course_ids[1])):
        user = accounts.add_user(store, username=username, password=PASSWORD, display_name=username.title())
        accounts.grant_course(store, user_id=user["id"], source_connection_id=source_id, course_id=course,
                              role="Instructor", granted_by="admin")
    with ServedApp(create_app(settings, store, scheduler=False)) as served:
        yield Web(served, store, settings, district, course_ids)
    engine.dispose()
