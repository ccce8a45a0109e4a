"""A Canvas course's grades into another course's gradebook through LTI Advantage, as a gradebook run.

The setup is the one an admin makes: a Canvas connection (the source), the platform
registered for LTI with passback's own tool key published on a developer key, an AGS
connection built from that registration by the service helper, and the course's sections
matched to the destination course's line items container. The run goes through
``passback.services.runs.run``. What should land is computed here from the source's raw
state (seed 000's rules and conversion table, in AGS terms); what did land is read from
the emulator's raw state (the assignments and grades a teacher sees) and from its results
service, with a token the test gets with an assertion of its own. A second run writes
nothing.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt

from passback.connectors.lti_ags.client import ASSERTION_TYPE, SCOPES
from passback.pipeline.run import RunRequest, RunScope
from passback.sandbox.district import TERM_END, TERM_START
from passback.services import lti, lti_ags, matching, runs
from passback.services.connections import Route
from passback.settings import Settings
from passback.store.connections import Connection, save_connection
from passback.store.db import Store
from passback.vault import load_key
from tests.conftest import District

TODAY = date(2026, 11, 1)  # inside the district's term: nothing is blocked as closed


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, concurrency=4)


def add_gradebook_course(district: District, source_course: int) -> int:
    """The destination: another Canvas course holding the source course's students (as the SIS enrolled them)."""
    emu = district.canvas.app.state.emulator
    state = emu.state
    course_id, section_id = emu.new_id(), emu.new_id()
    state["courses"][str(course_id)] = {
        "id": course_id, "name": "Biology (gradebook of record)", "course_code": "BIO-REC", "sis_course_id": "REC-1",
        "workflow_state": "available", "account_id": 1, "enrollment_term_id": 1, "start_at": None, "end_at": None,
        "time_zone": "America/Chicago", "grading_standard_id": None, "default_view": "modules"}
    state["sections"][str(section_id)] = {
        "id": section_id, "name": "All", "course_id": course_id, "nonxlist_course_id": None, "start_at": None,
        "end_at": None, "restrict_enrollments_to_section_dates": False, "sis_section_id": "REC-1-1",
        "sis_course_id": "REC-1", "integration_id": None}
    for enrollment in [e for e in list(state["enrollments"].values())
                       if e["course_id"] == source_course and e["type"] == "StudentEnrollment"]:
        new_id = emu.new_id()
        state["enrollments"][str(new_id)] = {**enrollment, "id": new_id, "course_id": course_id,
                                             "course_section_id": section_id, "sis_section_id": "REC-1-1"}
    return course_id


def connect_ags(store: Store, settings: Settings, district: District) -> tuple[Connection, Connection]:
    """The admin's setup: Canvas connection, developer key with passback's key, platform, AGS connection."""
    source = save_connection(store, load_key(settings), name="lms", kind="canvas", base_url=district.canvas.url,
                             credentials={"token": district.credentials.canvas_token})
    public = lti.tool_jwks(store, settings)["keys"][0]
    config = lti.developer_key_json("https://grades.example")  # what the admin pastes into Canvas
    assert set(SCOPES) <= set(config["scopes"])  # every scope the AGS destination asks for is on the key
    del config["public_jwk_url"]  # passback's /lti/jwks is not served here: the same key, given inline
    key = httpx.post(f"{district.canvas.url}/_emulator/lti/developer_keys", json={**config, "public_jwk": public}).json()
    platform = lti.register_platform(
        store, name="Canvas", issuer=key["issuer"], client_id=key["client_id"], auth_login_url=key["auth_login_url"],
        auth_token_url=key["auth_token_url"], jwks_url=key["jwks_url"], deployment_ids=[key["deployment_id"]],
        source_connection_id=source.id)
    destination = lti_ags.save_ags_connection(store, settings, platform["id"], name="canvas-ags")
    assert destination.base_url == district.canvas.url and destination.kind == "lti_ags"
    assert destination.credentials["key_id"] == public["kid"]  # the key the platform was given
    return source, destination


def expected_grades(state: dict[str, Any], course: int, title_limit: int) -> dict[tuple[str, int], float | None]:
    """(assignment name, user id) -> the points the gradebook must hold (None: no score), from the source's raw state.

    Seed 000's rules for this district: synced, published, points possible, a name within the
    district's limit, a due date inside the term, given to everyone (AGS has no categories, so
    no category rule). Its conversion: points as they are, complete/incomplete as full/zero,
    excused as no score (AGS holds no "excused"), missing and ungraded send nothing.
    """
    expected: dict[tuple[str, int], float | None] = {}
    for assignment in state["assignments"].values():
        due = (assignment.get("due_at") or "")[:10]
        if (assignment["course_id"] != course or not assignment.get("post_to_sis") or not assignment.get("published")
                or assignment.get("points_possible") is None or len(assignment["name"]) > title_limit or not due
                or not TERM_START.isoformat() <= due <= TERM_END.isoformat() or assignment.get("only_visible_to_overrides")):
            continue
        for submission in state["submissions"].values():
            if submission["assignment_id"] != assignment["id"]:
                continue
            key = (assignment["name"], submission["user_id"])
            if submission.get("excused"):
                expected[key] = None
            elif submission.get("score") is None or submission.get("workflow_state") != "graded":
                continue
            elif assignment["grading_type"] == "pass_fail":
                expected[key] = assignment["points_possible"] if submission["grade"] == "complete" else 0.0
            else:
                expected[key] = round(float(submission["score"]), 4)
    return expected


def held_grades(state: dict[str, Any], course: int) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, int], Any]]:
    """The destination course's line-item columns by name, and the grade of each (student, column) a teacher sees."""
    items = {str(i["assignment_id"]): i for i in state["lti"]["line_items"].values() if i["course_id"] == course}
    columns = {a["name"]: a for a in state["assignments"].values() if str(a["id"]) in items}
    grades = {(a["name"], s["user_id"]): s["score"] for a in columns.values()
              for s in state["submissions"].values() if s["assignment_id"] == a["id"]}
    return columns, grades


def results_read_back(district: District, store: Store, settings: Settings, key: dict[str, str],
                      course: int) -> dict[tuple[str, str], Any]:
    """Every result of the course's line items, read from the results service with a token of the test's own."""
    signing = lti.tool_signing_key(store, settings)
    now = int(time.time())
    assertion = jwt.encode({"alg": "RS256", "kid": signing.kid},
                           {"iss": key["client_id"], "sub": key["client_id"], "aud": key["token_url"], "iat": now,
                            "exp": now + 60, "jti": f"e2e-{time.monotonic_ns()}"}, signing)
    token = httpx.post(key["token_url"], data={"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                                               "client_assertion": assertion, "scope": " ".join(SCOPES)})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    container = f"{district.canvas.url}/api/lti/courses/{course}/line_items"
    items = httpx.get(container, params={"per_page": 100}, headers=headers).json()
    found: dict[tuple[str, str], Any] = {}
    for item in items:
        answer = httpx.get(item["id"] + "/results", params={"per_page": 100}, headers=headers)
        assert answer.headers["content-type"].startswith("application/vnd.ims.lis.v2.resultcontainer+json")
        for result in answer.json():
            assert result["scoreOf"] == item["id"]
            found[(item["label"], result["userId"])] = result.get("resultScore")
    return found


def test_a_course_lands_in_an_lti_gradebook_and_every_score_is_confirmed(
        sqlite_store: Store, settings: Settings, district: District) -> None:
    store, state = sqlite_store, district.canvas.state
    course = min(c["id"] for c in state["courses"].values())
    gradebook = add_gradebook_course(district, course)
    source, destination = connect_ags(store, settings, district)
    route = Route("lms", "canvas-ags")
    container = f"{district.canvas.url}/api/lti/courses/{gradebook}/line_items"
    for section in [s for s in state["sections"].values() if s["course_id"] == course]:
        asyncio.run(matching.override_section(store, settings, route, str(course), str(section["id"]), container))

    request = RunRequest(pipeline="gradebook", source_connection_id=source.id, destination_connection_id=destination.id,
                         scope=RunScope(course_id=str(course)), actor="test", today=TODAY)
    first = asyncio.run(runs.run(store, settings, request))
    assert first.failure is None, first.failure
    assert first.status == "completed_with_errors"  # the district's broken assignments (a long name, no points)

    expected = expected_grades(state, course, settings.district_title_limit)
    columns, grades = held_grades(state, gradebook)
    names = {name for name, _ in expected}
    assert set(columns) == names and len(names) >= 6
    for name, column in columns.items():
        source_assignment = next(a for a in state["assignments"].values()
                                 if a["course_id"] == course and a["name"] == name)
        assert column["points_possible"] == source_assignment["points_possible"]
        assert column["submission_types"] == ["none"] and column["published"]
    wanted = {key: points for key, points in expected.items() if points is not None}
    assert {key: score for key, score in grades.items() if score is not None} == wanted
    assert sum(1 for points in expected.values() if points is None) > 0  # excused grades: no score in the gradebook

    platform = district.canvas.app.state.lti_platform
    credentials = destination.credentials
    read_back = results_read_back(district, store, settings, credentials, gradebook)
    subject = {platform.subject(u): u["id"] for u in state["users"].values()}
    assert {(name, subject[user]): score for (name, user), score in read_back.items() if score is not None} == wanted
    assert {(name, subject[user]) for (name, user), score in read_back.items() if score is None} == {
        key for key, points in expected.items() if points is None}

    creates = [w for w in district.canvas.writes if w.method == "POST" and w.path.endswith(f"/{gradebook}/line_items")]
    assert sorted(w.json()["label"] for w in creates) == sorted(names)  # each column created once
    score_posts = [w for w in district.canvas.writes if w.method == "POST" and w.path.endswith("/scores")]
    assert len(score_posts) == len(expected)  # each score sent once
    assert first.counts["created"] == len(names) + len(expected)

    again = asyncio.run(runs.run(store, settings, request))
    assert again.failure is None and again.counts["created"] == again.counts["updated"] == 0
    assert again.counts["unchanged"] == first.counts["created"]
    writes_after = [w for w in district.canvas.writes if w.path.startswith("/api/lti/")]
    assert len(writes_after) == len(creates) + len(score_posts)  # the second run wrote nothing
