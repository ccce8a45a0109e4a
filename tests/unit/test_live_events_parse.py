"""Reading Canvas Live Events: Canvas's own example payloads (its event catalogue) parsed field by field,
global ids made local, a stable identity for redeliveries, and what passback ignores."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from passback.services.live_events import (
    LiveEventInvalid,
    dedupe_key,
    is_unsigned,
    local_id,
    parse_event,
    parse_jwks,
    resolve_source,
)
from passback.store.live_events import EventSource

METADATA = {  # the metadata of canvas-lms doc/api/data_services/json/canvas/event-types/grade_change.json
    "client_ip": "93.184.216.34", "context_account_id": "21070000000000079", "context_id": "21070000000000565",
    "context_role": "TeacherEnrollment", "context_sis_source_id": "2017.100.101.101-1", "context_type": "Course",
    "event_name": "grade_change", "event_time": "2019-11-01T19:11:05.222Z", "hostname": "oxana.instructure.com",
    "http_method": "POST", "producer": "canvas", "referrer": "https://oxana.instructure.com/courses/565/gradebook",
    "request_id": "1dd9dc6f-2fb0-4c19-a6c5-7ee1bf3ed295", "root_account_id": "21070000000000001",
    "root_account_lti_guid": "VicYj3cu5BIFpoZhDVU4DZumnlBrWi1grgJEzADs.oxana.instructure.com",
    "root_account_uuid": "VicYj3cu5BIFpoZhDVU4DZumnlBrWi1grgJEzADs", "session_id": "ef686f8ed684abf78cbfa1f6a58112b5",
    "time_zone": "America/Denver", "url": "https://oxana.instructure.com/api/v1/courses/565/assignments/355/submissions/48",
    "user_account_id": "21070000000000001", "user_agent": "Mozilla/5.0", "user_id": "21070000000000987",
    "user_login": "oxana@example.com", "user_sis_id": "456-T45",
}
GRADE_CHANGE = {"metadata": METADATA, "body": {
    "assignment_id": "21070000000000355", "grade": "5", "grader_id": "21070000000000987", "grading_complete": True,
    "muted": False, "old_grade": "4", "old_points_possible": 1, "old_score": 4, "points_possible": 1, "score": 5,
    "student_id": "21070000000000048", "student_sis_id": "ABC.123", "submission_id": "21070000000011086",
    "user_id": "21070000000000048"}}
SUBMISSION_UPDATED = {"metadata": {**METADATA, "event_name": "submission_updated"}, "body": {
    "assignment_id": "21070000000000396", "attempt": 1, "body": "user: 47, quiz: 78", "grade": "S",
    "graded_at": "2018-10-09T21:29:57Z", "group_id": "120120", "late": False, "lti_assignment_id": "f7d76a11",
    "lti_user_id": None, "missing": False, "score": 99.5, "submission_id": "21070000000011176",
    "submission_type": "online_quiz", "submitted_at": "2018-10-09T21:29:57Z", "updated_at": "2018-10-09T21:29:57Z",
    "url": None, "user_id": "21070000000000047", "workflow_state": "submitted"}}
ASSIGNMENT_UPDATED = {"metadata": {**METADATA, "event_name": "assignment_updated", "context_id": "21070000001279362"},
                      "body": {"assignment_group_id": "21070000001234567", "assignment_id": "21070000002030605",
                               "context_id": "21070000001279362", "context_type": "Course", "points_possible": 100,
                               "title": "A New Assignment For Today", "due_at": "2019-11-05T13:38:00.218Z",
                               "workflow_state": "published"}}


def test_global_ids_become_the_ids_the_rest_api_uses() -> None:
    assert local_id("21070000000000565") == "565"
    assert local_id(10000000000101) == "101"
    assert local_id("565") == "565" and local_id("sis_course_id:X") == "sis_course_id:X"
    assert local_id(None) is None and local_id("") is None and local_id(True) is None


def test_a_grade_change_keeps_ids_and_drops_grades_and_people() -> None:
    parsed = parse_event(GRADE_CHANGE)
    assert parsed is not None
    assert (parsed.event_name, parsed.course_id, parsed.assignment_id) == ("grade_change", "565", "355")
    assert parsed.event_time == datetime(2019, 11, 1, 19, 11, 5, 222000, tzinfo=UTC)
    assert parsed.detail == {"submission_id": "11086", "user_id": "48"}  # no grade, score, SIS id or login


def test_submission_and_assignment_events() -> None:
    submission = parse_event(SUBMISSION_UPDATED)
    assert submission is not None and submission.detail == {"submission_id": "11176", "user_id": "47",
                                                             "workflow_state": "submitted"}
    assignment = parse_event(ASSIGNMENT_UPDATED)
    assert assignment is not None
    assert (assignment.course_id, assignment.assignment_id, assignment.detail) == (
        "1279362", "2030605", {"workflow_state": "published"})
    deleted = copy.deepcopy(ASSIGNMENT_UPDATED)
    deleted["body"]["workflow_state"] = "deleted"  # how Canvas says an assignment was deleted
    assert parse_event(deleted).detail == {"workflow_state": "deleted"}  # type: ignore[union-attr]
    named = copy.deepcopy(ASSIGNMENT_UPDATED)
    named["metadata"]["event_name"] = "assignment_deleted"
    assert parse_event(named).event_name == "assignment_deleted"  # type: ignore[union-attr]


def test_what_passback_does_not_act_on_is_none_and_what_is_no_event_is_invalid() -> None:
    assert parse_event({"metadata": {**METADATA, "event_name": "logged_in"}, "body": {}}) is None
    group = copy.deepcopy(ASSIGNMENT_UPDATED)
    group["body"]["context_type"] = "Group"
    group["metadata"]["context_type"] = "Group"
    assert parse_event(group) is None
    for broken in ([], {"body": {}}, {"metadata": {"event_time": "2019-11-01T19:11:05Z"}},
                   {"metadata": {**METADATA, "event_time": "yesterday"}}):
        with pytest.raises(LiveEventInvalid):
            parse_event(broken)


def test_the_identity_is_stable_across_redeliveries_and_tells_events_of_one_request_apart() -> None:
    key = dedupe_key(GRADE_CHANGE["metadata"], GRADE_CHANGE["body"])
    reordered = dedupe_key(dict(reversed(list(METADATA.items()))), dict(reversed(list(GRADE_CHANGE["body"].items()))))
    assert key == reordered and len(key) == 64
    other_student = {**GRADE_CHANGE["body"], "submission_id": "21070000000011087", "user_id": "21070000000000049"}
    assert dedupe_key(METADATA, other_student) != key  # a bulk grade: one request, many events
    assert dedupe_key({**METADATA, "event_name": "submission_updated"}, GRADE_CHANGE["body"]) != key
    assert dedupe_key({**METADATA, "event_time": "2019-11-01T19:11:05.223Z"}, GRADE_CHANGE["body"]) != key
    job = {k: v for k, v in METADATA.items() if k != "request_id"} | {"job_id": "123"}
    assert dedupe_key(job, GRADE_CHANGE["body"]) != key


def test_which_connection_an_event_is_for() -> None:
    one = EventSource(1, "lms", "https://oxana.instructure.com", {})
    two = EventSource(2, "lms-2", "http://127.0.0.1:8081", {})
    assert resolve_source([one, two], connection="lms-2", hostname="oxana.instructure.com") == two
    assert resolve_source([one, two], connection=None, hostname="oxana.instructure.com") == one
    assert resolve_source([one, two], connection=None, hostname="127.0.0.1:8081") == two
    assert resolve_source([one], connection=None, hostname="vanity.district.org") == one  # the only one there is
    for connection, hostname in ((None, "vanity.district.org"), ("nope", None)):
        with pytest.raises(Exception, match="connection"):
            resolve_source([one, two], connection=connection, hostname=hostname)


def test_an_unsigned_body_and_a_jwks_with_foreign_entries() -> None:
    assert is_unsigned(b' {"metadata": {}}') and not is_unsigned(b"eyJhbGciOiJSUzI1NiJ9.e30.sig")
    assert parse_jwks([{"kty": "oct", "kid": "a", "k": "x"}, {"kty": "RSA"}, "junk",
                       {"kty": "RSA", "kid": "b", "alg": "HS256", "n": "x", "e": "AQAB"}]) == {}
