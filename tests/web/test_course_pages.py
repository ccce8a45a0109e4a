"""The course pages and their API over real HTTP: what they show is checked against the emulators' records."""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest

from passback.services.schedules import get_schedule
from passback.store.leases import take
from tests.web.conftest import SOURCE, Web, csrf_of


def _wait_idle(client: httpx.Client, course: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = client.get(f"/api/v1/courses/{SOURCE}/{course}/progress").json()
        if progress is None or not progress["running"]:
            return progress or {}
        time.sleep(0.2)
    raise AssertionError("the sync did not finish")


def _sync(client: httpx.Client, course: str, **body: str) -> dict:
    page = client.get(f"/courses/{SOURCE}/{course}")
    answer = client.post(f"/api/v1/courses/{SOURCE}/{course}/sync", json=body,
                         headers={"X-CSRF-Token": csrf_of(page.text)})
    assert answer.status_code == 202, answer.text
    return _wait_idle(client, course)


def test_student_view_shows_what_powerschool_holds(web: Web) -> None:
    teacher, course = web.client("teacher-a"), web.courses[0]
    before = teacher.get(f"/api/v1/courses/{SOURCE}/{course}/students").json()
    assert all(a["destination"] is None for s in before["students"] for a in s["assignments"])
    finished = _sync(teacher, course)
    assert finished["status"] == "completed_with_errors"  # the district's first course is broken on purpose
    view = teacher.get(f"/api/v1/courses/{SOURCE}/{course}/students").json()
    ps = web.district.powerschool.state
    canvas_users = web.district.canvas.state["users"]
    dcid_of = {str(s["local_id"]): int(dcid) for dcid, s in ps["students"].items()}
    checked = 0
    for student in view["students"]:
        sis = canvas_users[student["student_id"]]["sis_user_id"]
        held = Counter(s["scorepoints"] for s in ps["scores"].values() if s["studentsdcid"] == dcid_of[sis]
                       and s["scorepoints"] is not None)
        shown = Counter(float(a["destination"].split()[0]) for a in student["assignments"]
                        if a["destination"] and a["destination"].split()[0].replace(".", "", 1).isdigit())
        assert shown == held, student["name"]
        assert all(a["state"] in ("in sync", "not synced", "error") for a in student["assignments"])
        checked += sum(held.values())
    assert checked > 20


def test_preview_sends_nothing_and_shows_what_a_sync_then_does(web: Web) -> None:
    teacher, course = web.client("teacher-a"), web.courses[0]
    preview = teacher.post(f"/api/v1/courses/{SOURCE}/{course}/preview",
                           headers={"X-CSRF-Token": csrf_of(teacher.get("/account").text)}).json()
    assert not [w for w in web.district.powerschool.writes if w.path.startswith("/ws/xte/score")]
    creates = preview["totals"]["create"]
    assert creates > 0 and sum(s["create"] for s in preview["students"]) == creates
    finished = _sync(teacher, course)
    assert finished["counts"]["created"] >= creates  # assignments are items too
    again = teacher.post(f"/api/v1/courses/{SOURCE}/{course}/preview",
                         headers={"X-CSRF-Token": csrf_of(teacher.get("/account").text)}).json()
    assert again["totals"] == {"create": 0, "update": 0, "delete": 0}


def test_a_course_held_by_another_run_starts_nothing(web: Web) -> None:
    teacher, course = web.client("teacher-a"), web.courses[0]
    source_id, dest_id = (c.id for c in _refs(web))
    held = take(web.store, f"course:{source_id}:{dest_id}:{course}", actor="alice", run_id="r-1", ttl=60)
    writes_before = len(web.district.powerschool.writes)
    page = teacher.get(f"/courses/{SOURCE}/{course}")
    assert "in progress" in page.text and "alice" in page.text  # the page says so before anyone clicks
    answer = teacher.post(f"/api/v1/courses/{SOURCE}/{course}/sync", json={},
                          headers={"X-CSRF-Token": csrf_of(page.text)})
    assert answer.status_code == 409 and "alice" in answer.json()["detail"]
    clicked = teacher.post(f"/courses/{SOURCE}/{course}/sync", data={"csrf_token": csrf_of(page.text)},
                           headers={"HX-Request": "true"})
    assert clicked.status_code == 409 and "alice" in clicked.text
    assert len(web.district.powerschool.writes) == writes_before
    assert teacher.get(f"/api/v1/courses/{SOURCE}/{course}").json()["runs"] == []
    assert held is not None


def _refs(web: Web):  # type: ignore[no-untyped-def]
    from passback.store.connections import connection_refs

    by_name = {c.name: c for c in connection_refs(web.store)}
    return by_name[SOURCE], by_name["sandbox-powerteacher"]


def test_nightly_schedule_shows_its_next_run_inside_the_window(web: Web) -> None:
    teacher, course = web.client("teacher-a"), web.courses[0]
    page = teacher.get(f"/courses/{SOURCE}/{course}")
    teacher.post(f"/courses/{SOURCE}/{course}/schedule", data={"mode": "nightly", "csrf_token": csrf_of(page.text)})
    source, destination = _refs(web)
    saved = get_schedule(web.store, source_connection_id=source.id, destination_connection_id=destination.id,
                         course_id=course)
    assert saved["mode"] == "nightly" and saved["actor"] == "teacher-a"
    when = saved["next_run_at"] if saved["next_run_at"].tzinfo else saved["next_run_at"].replace(tzinfo=UTC)
    local = when.astimezone(__import__("zoneinfo").ZoneInfo("America/Chicago"))
    assert "01:00" <= local.strftime("%H:%M") < "05:00" and when > datetime.now(UTC)  # the district's default window
    page = teacher.get(f"/courses/{SOURCE}/{course}")
    assert "Next scheduled sync:" in page.text
    teacher.post(f"/courses/{SOURCE}/{course}/schedule", data={"mode": "manual", "csrf_token": csrf_of(page.text)})
    assert "Manual only" in teacher.get(f"/courses/{SOURCE}/{course}").text


def test_items_filter_by_outcome_assignment_and_student(web: Web) -> None:
    teacher, course = web.client("teacher-a"), web.courses[0]
    _sync(teacher, course)
    detail = teacher.get(f"/api/v1/courses/{SOURCE}/{course}").json()
    run_id = detail["runs"][0]["id"]
    base = f"/api/v1/courses/{SOURCE}/{course}/runs/{run_id}/items"
    default = teacher.get(base).json()["items"]
    assert default and {i["outcome"] for i in default} <= {"error", "skipped"}
    assert all(i["meaning"] and i["fix"] for i in default if i["outcome"] == "error")
    created = teacher.get(base, params={"outcome": "created"}).json()["items"]
    student = next(i["student_id"] for i in created if i["student_id"])
    only = teacher.get(base, params={"outcome": "all", "student_id": student}).json()["items"]
    assert only and all(i["student_id"] == student for i in only)
    assignment = created[0]["assignment_id"]
    of_one = teacher.get(base, params={"outcome": "all", "assignment_id": assignment}).json()["items"]
    assert of_one and all(i["assignment_id"] == assignment for i in of_one)
    page = teacher.get(f"/courses/{SOURCE}/{course}", params={"run": run_id, "outcome": "error"})
    assert page.text.count('class="item error"') == sum(1 for i in default if i["outcome"] == "error")


@pytest.mark.parametrize("role", ["teacher-b"])
def test_the_audit_log_is_for_admins_and_filters(web: Web, role: str) -> None:
    _sync(web.client("teacher-a"), web.courses[0])
    admin = web.client("admin")
    rows = admin.get("/api/v1/audit", params={"limit": 1000}).json()
    assert rows and all(r["actor"] == "teacher-a" and r["answer"] == "accepted" for r in rows)
    scored = [w for w in web.district.powerschool.writes if w.path == "/ws/xte/score"]
    sent = sum(len(__import__("json").loads(w.body)["assignment_scores"]) for w in scored)
    assert len(rows) == sent  # one audit row per grade PowerSchool accepted
    student = rows[0]["source_student_id"]
    page = admin.get("/admin/audit", params={"student": student})
    assert page.text.count("<tr><td>") == sum(1 for r in rows if r["source_student_id"] == student)
    assert web.client(role).get("/admin/audit").status_code == 403


def test_unlink_then_link_back_from_the_dropdown(web: Web) -> None:
    teacher, course = web.client("teacher-a"), web.courses[0]
    _sync(teacher, course)
    setup = teacher.get(f"/courses/{SOURCE}/{course}/setup")
    row = re.search(r'<tr id="a-(\d+)">(.*?)</tr>', setup.text, re.S)
    assignment = row.group(1)
    linked_to = re.search(r'<option value="(\d+)" selected>', row.group(2)).group(1)
    token = csrf_of(setup.text)
    teacher.post(f"/courses/{SOURCE}/{course}/setup/unlink", data={"assignment_id": assignment, "csrf_token": token})
    preview = teacher.post(f"/api/v1/courses/{SOURCE}/{course}/preview", headers={"X-CSRF-Token": token}).json()
    step = next(a for a in preview["assignments"] if a["assignment_id"] == assignment)
    assert step["action"] in ("create", "error")  # unlinked: a new assignment, or the seed's duplicate-name error
    answer = teacher.post(f"/courses/{SOURCE}/{course}/setup/link",
                          data={"assignment_id": assignment, "dest_assignment_id": linked_to, "csrf_token": token})
    assert answer.status_code == 303
    assert "Linked to the existing destination assignment" in teacher.get(answer.headers["location"]).text
    preview = teacher.post(f"/api/v1/courses/{SOURCE}/{course}/preview", headers={"X-CSRF-Token": token}).json()
    step = next(a for a in preview["assignments"] if a["assignment_id"] == assignment)
    assert step["action"] == "update"  # linked: the existing destination assignment is kept and brought up to date
    held = len(web.district.powerschool.state["assignments"])
    _sync(teacher, course)
    assert len(web.district.powerschool.state["assignments"]) == held  # no second assignment was made
