"""``POST /events/canvas`` over real HTTP: the emulated Canvas signs and delivers, passback verifies and keeps.

Every event here is one the Canvas emulator made (its metadata and body as Canvas's), signed
with its key and posted by its delivery task, or replayed, forged or tampered with by the test.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog.testing
from joserfc.jwk import RSAKey

from passback.services.live_events import JWKS_SETTING, UNSIGNED_SETTING
from passback.store import live_events as repo
from passback.store.connections import update_settings
from tests.conftest import District
from tests.live_events_kit import EventsWeb, delivered, events_web, gradable, grade
from tests.web.conftest import SOURCE


def _course(district: District) -> str:
    return min(district.canvas.state["courses"])


def _one_grade(web: EventsWeb, index: int = 0, value: float | None = None) -> dict[str, Any]:
    """A grade saved in Canvas; the grade_change event it made."""
    course = _course(web.district)
    assignment, student, points = gradable(web.district.canvas.state, course)[index]
    grade(web.district, [{"course_id": course, "assignment_id": assignment, "user_id": student,
                          "posted_grade": str(points if value is None else value)}])
    return next(e for e in reversed(web.publisher.emitted) if e["metadata"]["event_name"] == "grade_change")


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_a_signed_event_is_stored_once_with_canvas_ids_made_local(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path) as web:
        web.subscribe()
        event = _one_grade(web)
        log = delivered(district, 2)  # grade_change and submission_updated
        assert [(d["event_name"], d["status"]) for d in log] == [("grade_change", 202), ("submission_updated", 202)]
        assert {d["kid"] for d in log} == {web.publisher.kid}
        stored = repo.pending(web.store, web.source_id, _course(district))
        assert [e.event_name for e in stored] == ["grade_change", "submission_updated"]
        change = stored[0]
        body = event["body"]
        assert event["metadata"]["context_id"] == str(10**13 + int(_course(district)))  # Canvas's global id
        assert change.assignment_id == str(int(body["assignment_id"]) - 10**13)
        assert change.detail == {"submission_id": str(int(body["submission_id"]) - 10**13),
                                 "user_id": str(int(body["user_id"]) - 10**13)}
        assert change.event_time == datetime.fromisoformat(event["metadata"]["event_time"])

        # Canvas delivers at least once: the same event again, signed again, is acknowledged and not kept twice.
        again = web.post(web.publisher.sign(event))
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        assert again.json()["event_id"] == change.id
        reordered = {"body": dict(reversed(list(body.items()))), "metadata": event["metadata"]}
        assert web.post(web.publisher.sign(reordered)).json()["status"] == "duplicate"
        assert repo.count_events(web.store) == 2
        assert web.keys.fetches == 1  # the keys were fetched once and kept


def test_a_tampered_or_forged_token_is_refused(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path) as web:
        event = _one_grade(web)
        token = web.publisher.sign(event)
        header, payload, signature = _segments(token)

        changed = json.loads(base64.urlsafe_b64decode(payload + "=="))
        changed["body"]["score"] = 0.0  # a grade changed on the way: the signature no longer matches
        tampered = web.post(".".join([header, _b64(json.dumps(changed).encode()), signature]))
        assert tampered.status_code == 401
        assert "does not verify" in tampered.json()["detail"]

        impostor = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, private=True)
        forged = web.post(web.publisher.sign(event, key=impostor, kid=web.publisher.kid))  # right kid, wrong key
        assert forged.status_code == 401 and "does not verify" in forged.json()["detail"]

        unsigned_header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": web.publisher.kid}).encode())
        no_signature = web.post(f"{unsigned_header}.{payload}.")
        assert no_signature.status_code == 401 and "RS256" in no_signature.json()["detail"]

        not_a_token = web.post("hello")
        assert not_a_token.status_code == 401
        assert repo.count_events(web.store) == 0  # nothing refused was kept

        assert web.post(token).status_code == 202  # the untouched token is fine


def test_an_unsigned_event_is_refused_naming_the_setting(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path) as web:
        web.subscribe(signed=False)
        _one_grade(web)
        log = delivered(district, 6)  # Canvas delivers again what was not taken: three tries each
        assert sorted((d["event_name"], d["attempt"], d["status"]) for d in log) == sorted(
            (name, attempt, 401) for name in ("grade_change", "submission_updated") for attempt in (1, 2, 3))
        refused = web.post(json.dumps(web.publisher.emitted[-1]), content_type="application/json")
        assert refused.status_code == 401
        assert UNSIGNED_SETTING in refused.json()["detail"] and "Sign Payload" in refused.json()["detail"]
        assert repo.count_events(web.store) == 0


def test_an_unsigned_event_is_accepted_when_the_setting_allows_it(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path, live_events_allow_unsigned=True) as web:
        web.subscribe(signed=False)
        _one_grade(web)
        assert [d["status"] for d in delivered(district, 2)] == [202, 202]
        assert repo.count_events(web.store) == 2
        assert web.keys.fetches == 0  # nothing to verify


def test_a_rotated_key_is_fetched_and_the_next_event_verifies(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path, live_events_jwks_refetch_seconds=0) as web:
        web.subscribe()
        _one_grade(web, 0)
        first = delivered(district, 2)
        old_kid = first[0]["kid"]
        assert web.keys.fetches == 1

        rotated = district.canvas.control("live_events/rotate", {"keep_previous": False})
        assert rotated["previous"] == old_kid and rotated["published"] == [rotated["kid"]]
        _one_grade(web, 1)
        after = delivered(district, 4)[2:]
        assert [(d["kid"], d["status"]) for d in after] == [(rotated["kid"], 202)] * 2
        assert web.keys.fetches == 2  # one refetch for the new kid, then the cache had it
        assert repo.count_events(web.store) == 4


def test_an_unknown_key_refetches_at_most_once_per_window(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path, live_events_jwks_refetch_seconds=60) as web:
        event = _one_grade(web)
        assert web.post(web.publisher.sign(event)).status_code == 202
        stranger = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, private=True, auto_kid=True)
        for _ in range(3):  # made-up key ids must not make passback hammer the publisher
            refused = web.post(web.publisher.sign(event, key=stranger, kid=str(stranger.kid)))
            assert refused.status_code == 401 and JWKS_SETTING in refused.json()["detail"]
        assert web.keys.fetches == 1


def test_the_connections_own_jwks_url_wins_over_the_setting(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path, live_events_jwks_url=f"{district.canvas.url}/no-such-jwks") as web:
        event = _one_grade(web)
        assert web.post(web.publisher.sign(event)).status_code == 503  # the configured JWKS cannot be had
        update_settings(web.store, SOURCE, {"live_events_jwks_url": f"{district.canvas.url}/live_events/jwks"})
        assert web.post(web.publisher.sign(event), connection=SOURCE).status_code == 202
        assert web.post(web.publisher.sign(event), connection="no-such-connection").status_code == 404


def test_events_passback_does_not_act_on_are_acknowledged_and_ignored(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path) as web:
        event = _one_grade(web)
        for name in ("logged_in", "course_grade_change", "wiki_page_updated"):
            other = {"metadata": {**event["metadata"], "event_name": name}, "body": {}}
            answer = web.post(web.publisher.sign(other))
            assert answer.status_code == 200 and answer.json()["status"] == "ignored"
        group = {"metadata": {**event["metadata"], "event_name": "assignment_created", "context_type": "Group"},
                 "body": {"assignment_id": "10000000000001", "context_type": "Group", "context_id": "10000000000002"}}
        assert web.post(web.publisher.sign(group)).json()["status"] == "ignored"  # not a course's gradebook
        broken = web.post(web.publisher.sign({"metadata": {"event_name": "grade_change"}, "body": {}}))
        assert broken.status_code == 400 and "event_time" in broken.json()["detail"]
        assert repo.count_events(web.store) == 0


def test_assignment_events_are_kept_deletion_included(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path) as web:
        web.subscribe(events=["assignment_created", "assignment_updated"])
        course = _course(district)
        api = f"{district.canvas.url}/api/v1/courses/{course}/assignments"
        auth = {"Authorization": f"Bearer {district.credentials.canvas_token}"}
        made = httpx.post(api, data={"assignment[name]": "Lab 9", "assignment[points_possible]": "10"}, headers=auth)
        assignment_id = made.json()["id"]
        httpx.put(f"{api}/{assignment_id}", data={"assignment[name]": "Lab 9 (revised)"}, headers=auth)
        httpx.delete(f"{api}/{assignment_id}", headers=auth)
        assert [d["status"] for d in delivered(district, 3)] == [202, 202, 202]
        stored = repo.pending(web.store, web.source_id, course)
        assert [(e.event_name, e.assignment_id, e.detail.get("workflow_state")) for e in stored] == [
            ("assignment_created", str(assignment_id), "published"),
            ("assignment_updated", str(assignment_id), "published"),
            ("assignment_updated", str(assignment_id), "deleted")]
        created = next(e for e in web.publisher.emitted if e["metadata"]["event_name"] == "assignment_created")
        assert set(created["body"]) >= {"assignment_id", "title", "points_possible", "due_at", "workflow_state",
                                        "context_id", "context_type", "assignment_group_id", "submission_types"}


def test_out_of_order_events_are_listed_by_when_they_happened(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path) as web:
        course = _course(district)
        rows = gradable(district.canvas.state, course)[:3]
        grade(district, [{"course_id": course, "assignment_id": a, "user_id": s, "posted_grade": "1"}
                         for a, s, _ in rows])
        changes = [e for e in web.publisher.emitted if e["metadata"]["event_name"] == "grade_change"][-3:]
        start = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
        for offset, event in zip((2, 0, 1), changes, strict=True):  # arrival order: 3rd, 1st, 2nd in Canvas's time
            stamp = (start + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            event["metadata"]["event_time"] = stamp
        for event in changes:
            assert web.post(web.publisher.sign(event)).status_code == 202
        pending = repo.pending(web.store, web.source_id, course)
        assert [e.event_time for e in pending] == [start + timedelta(seconds=n) for n in range(3)]
        assert [e.id for e in pending] == [2, 3, 1]  # the first to arrive happened last


def test_logs_name_ids_and_counts_never_grades_or_people(district: District, tmp_path: Path) -> None:
    with events_web(district, tmp_path) as web, structlog.testing.capture_logs() as logs:
        event = _one_grade(web, value=7.5)
        web.post(web.publisher.sign(event))
        web.post(web.publisher.sign(event))
    mine = [entry for entry in logs if entry["event"].startswith("live_event")]
    assert {entry["event"] for entry in mine} >= {"live_event_received"}
    student = district.canvas.state["users"][str(int(event["body"]["user_id"]) - 10**13)]
    text = json.dumps(logs, default=str)  # every log line of the test, not only the Live Events ones
    for secret in (student["name"], student["sis_user_id"], student["login_id"], event["metadata"]["user_agent"] or "",
                   event["body"]["grade"]):
        assert secret and secret not in text
    assert all(set(entry) <= {"event", "log_level", "status", "event_id", "event_name", "source_connection_id",
                              "course_id", "url", "keys"} for entry in mine)
