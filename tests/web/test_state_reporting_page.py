"""The admin's state-reporting page: status and mappings, the toggle, a send, and its error log in the seed's words."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from passback.services import accounts
from passback.settings import Settings
from passback.store.db import Store
from passback.web.app import create_app
from tests.conftest import ServedApp
from tests.e2e.test_edfi_grades import SSA_MESSAGE, World, replace, served_world
from tests.web.conftest import PASSWORD, csrf_of, sign_in


@pytest.fixture
def admin_page(sqlite_store: Store, tmp_path: Path) -> Iterator[tuple[World, httpx.Client]]:
    with served_world(sqlite_store, Settings(data_dir=tmp_path, concurrency=4)) as world:
        accounts.add_user(world.store, username="admin", password=PASSWORD, is_admin=True)
        with ServedApp(create_app(world.settings, world.store, scheduler=False)) as app, \
                httpx.Client(base_url=app.url, timeout=60) as client:
            sign_in(client, "admin")
            yield world, client


def _post(client: httpx.Client, path: str, **data: str) -> httpx.Response:
    page = client.get("/admin/state-reporting")
    return client.post(path, data={"csrf_token": csrf_of(page.text), **data}, follow_redirects=True)


def test_send_toggle_and_the_error_log(admin_page: tuple[World, httpx.Client]) -> None:
    world, client = admin_page
    replace(world, 7, student_id="100001", student_name="Student 100001",
            section_id=world.grades[20].section_id)  # a student with no association to that section
    world.write()
    page = client.get("/admin/state-reporting")
    assert "Grades resource: on" in page.text and "S1 Final" in page.text
    sent = _post(client, "/admin/state-reporting/send")
    assert "Sync: completed_with_errors" in sent.text
    assert len(world.ods_grades) == len(world.grades) - 1  # every posted grade but the refused one
    assert html.escape(SSA_MESSAGE, quote=True) in sent.text  # the seed's own words in the error log
    toggled = _post(client, "/admin/state-reporting/toggle", on="off")
    assert "Grades resource: off" in toggled.text
    held = len(world.ods_grades)
    replace(world, 0, letter="A" if world.grades[0].letter != "A" else "B")
    world.write()
    _post(client, "/admin/state-reporting/send")
    assert len(world.ods_grades) == held  # off: what was sent stays, nothing new goes
    mapped = _post(client, "/admin/state-reporting/map-task", task="S2 Final",
                   grade_type="uri://ed-fi.org/GradeTypeDescriptor#Final",
                   periods="uri://ed-fi.org/GradingPeriodDescriptor#Second Semester")
    assert "S2 Final" in mapped.text
