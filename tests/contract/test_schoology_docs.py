"""The Schoology source and emulator against Schoology's REST API v1 documentation, over real HTTP.

Each test pins one documented point the source or emulator once got wrong:

* Authentication: two-legged requests still carry ``oauth_token``, empty (``oauth_token=""``).
* Grading Categories, bulk create: the answer is ``{"grading_category": [...]}`` with 200,
  and a create whose answer is lost is found again, never made twice.
* Grade: the only exceptions are 1 (excused) and 2 (incomplete); any other code is
  reported, not guessed.
* Assignment ``type`` is ``assignment``, ``assessment`` or ``discussion``; all three are
  gradebook columns (``/grade_items``) and are read, and anything else is reported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from authlib.oauth1 import SIGNATURE_HMAC_SHA1, ClientAuth
from structlog.testing import capture_logs

from passback.connectors.schoology.client import OAuth1, SchoologyClient
from passback.connectors.schoology.source import SchoologySource
from passback.emulators.schoology import MISSING_TOKEN_TEXT, add_grade_item
from passback.errors import SourceError
from passback.model.values import AssignmentChanges
from tests.conftest import SCHOOLOGY_KEY, SCHOOLOGY_SECRET, SchoologyDistrict, ServedApp


@pytest.fixture
async def source(schoology_district: SchoologyDistrict) -> AsyncIterator[SchoologySource]:
    client = SchoologyClient(schoology_district.schoology.url, SCHOOLOGY_KEY, SCHOOLOGY_SECRET)
    client.http.policy.initial_wait = 0.01
    yield SchoologySource(client)
    await client.aclose()


def section_of(district: SchoologyDistrict) -> str:
    return str(min(int(s) for s in district.schoology.state["sections"]))


def writes_to(app: ServedApp, method: str, path_end: str) -> list[tuple[str, str, Any]]:
    """The emulator's accepted writes of this method whose path ends so."""
    return [w for w in app.app.state.emulator.writes if w[0] == method and w[1].endswith(path_end)]


def categories_named(state: dict[str, Any], section: str, name: str) -> list[str]:
    return sorted(str(c["id"]) for c in state["grading_categories"].values()
                  if c["section_id"] == section and c["title"] == name)


def students(state: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return sorted((e for e in state["enrollments"].values() if e["section_id"] == section and e["admin"] == 0),
                  key=lambda e: int(e["id"]))


def put_grade(state: dict[str, Any], column: int, enrollment: dict[str, Any], grade: float | None,
              exception: int = 0) -> None:
    state["grades"][f"{column}:{enrollment['id']}"] = {
        "enrollment_id": int(enrollment["id"]), "assignment_id": column, "grade": grade, "exception": exception,
        "timestamp": 1793000000, "comment": ""}


# --- Authentication: oauth_token="" ----------------------------------------------------------


def plaintext_header(**extra: str) -> str:
    params = {"oauth_consumer_key": SCHOOLOGY_KEY, "oauth_nonce": "n-" + "-".join(extra.values()),
              "oauth_timestamp": "1700000000", "oauth_signature_method": "PLAINTEXT", "oauth_version": "1.0",
              "oauth_signature": f"{SCHOOLOGY_SECRET}%26", **extra}
    return 'OAuth realm="Schoology API", ' + ", ".join(f'{k}="{v}"' for k, v in params.items())


def test_the_client_signs_an_empty_oauth_token() -> None:
    request = httpx.Request("GET", "https://api.schoology.com/v1/users/me")
    signed = next(OAuth1(SCHOOLOGY_KEY, SCHOOLOGY_SECRET).auth_flow(request))
    assert 'oauth_token=""' in signed.headers["Authorization"]
    assert signed.headers["Authorization"].startswith('OAuth realm="Schoology API"')


def test_the_emulator_refuses_a_request_without_oauth_token(schoology_district: SchoologyDistrict) -> None:
    url = f"{schoology_district.schoology.url}/v1/users/me"
    missing = httpx.get(url, headers={"Authorization": plaintext_header()})
    assert missing.status_code == 401 and missing.text == MISSING_TOKEN_TEXT
    with_token = httpx.get(url, headers={"Authorization": plaintext_header(oauth_token="three-legged")})
    assert with_token.status_code == 401
    empty = httpx.get(url, headers={"Authorization": plaintext_header(oauth_token="")})
    assert empty.status_code == 303
    # authlib's own signer, as the client once used it, leaves the empty token out: refused.
    _, headers, _ = ClientAuth(SCHOOLOGY_KEY, SCHOOLOGY_SECRET, signature_method=SIGNATURE_HMAC_SHA1,
                               realm="Schoology API").sign("GET", url, {}, b"")
    bare = httpx.get(url, headers=headers)
    assert bare.status_code == 401 and bare.text == MISSING_TOKEN_TEXT


@pytest.mark.anyio
async def test_the_source_is_accepted_with_its_hmac_signature(source: SchoologySource) -> None:
    assert await source.list_course_ids()


# --- Grading Categories: bulk create -------------------------------------------------------


def test_category_create_is_answered_as_documented(schoology_district: SchoologyDistrict) -> None:
    section = section_of(schoology_district)
    with httpx.Client(auth=OAuth1(SCHOOLOGY_KEY, SCHOOLOGY_SECRET)) as client:
        answer = client.post(f"{schoology_district.schoology.url}/v1/sections/{section}/grading_categories",
                             json={"grading_categories": {"grading_category": [{"title": "Experiments", "weight": 100},
                                                                               {"title": "In-class Work"}]}})
    assert answer.status_code == 200
    rows = answer.json()["grading_category"]
    assert [(r["title"], r["response_code"]) for r in rows] == [("Experiments", 200), ("In-class Work", 200)]
    assert all(isinstance(r["id"], str) for r in rows) and "grading_categories" not in answer.json()
    assert [w[2] for w in writes_to(schoology_district.schoology, "POST", "/grading_categories")] == [
        {"grading_categories": {"grading_category": [{"title": "Experiments", "weight": 100}, {"title": "In-class Work"}]}}]


@pytest.mark.anyio
async def test_create_category_reads_the_documented_answer(schoology_district: SchoologyDistrict,
                                                           source: SchoologySource) -> None:
    section = section_of(schoology_district)
    created = await source.create_category(section, "Lab Work", "990001")
    assert categories_named(schoology_district.schoology.state, section, "Lab Work") == [created]
    assert len(writes_to(schoology_district.schoology, "POST", f"/sections/{section}/grading_categories")) == 1


@pytest.mark.anyio
async def test_a_lost_create_answer_is_found_again_never_made_twice(schoology_district: SchoologyDistrict,
                                                                   source: SchoologySource) -> None:
    section, state = section_of(schoology_district), schoology_district.schoology.state
    before = categories_named(state, section, "Tests")
    assert before  # the teacher already has a category of that name: it must not be taken for the new one
    schoology_district.schoology.control("faults", {"fault_rate": 1.0, "fault_kinds": ["reset"], "only_methods": ["POST"]})
    created = await source.create_category(section, "Tests", "990002")
    after = categories_named(state, section, "Tests")
    assert created not in before and sorted(before + [created]) == after
    assert len(writes_to(schoology_district.schoology, "POST", "/grading_categories")) == 1
    assert schoology_district.schoology.control("faults")["injected"] == {"reset": 1}


@pytest.mark.anyio
async def test_an_unconfirmed_create_that_did_not_happen_is_reported(schoology_district: SchoologyDistrict,
                                                                     source: SchoologySource) -> None:
    section = section_of(schoology_district)
    schoology_district.schoology.control("faults", {"fault_rate": 1.0, "fault_kinds": ["500"], "only_methods": ["POST"]})
    with pytest.raises(SourceError, match="nothing was created"):
        await source.create_category(section, "Posters", "990003")
    assert categories_named(schoology_district.schoology.state, section, "Posters") == []
    assert writes_to(schoology_district.schoology, "POST", "/grading_categories") == []


@pytest.mark.anyio
async def test_a_refused_row_is_an_error(schoology_district: SchoologyDistrict, source: SchoologySource) -> None:
    with pytest.raises(SourceError, match="refused to create the category"):
        await source.create_category(section_of(schoology_district), "", "990004")


# --- Grade: exceptions 1 and 2 only --------------------------------------------------------


@pytest.mark.anyio
async def test_an_undocumented_exception_is_reported_not_guessed(schoology_district: SchoologyDistrict,
                                                                 source: SchoologySource) -> None:
    section, state = section_of(schoology_district), schoology_district.schoology.state
    column = add_grade_item(state, section, "assignment", "Lab 9", max_points="10", due="2026-10-20 23:59:00")["id"]
    first, second, third = students(state, section)[:3]
    put_grade(state, column, first, None, exception=1)
    put_grade(state, column, second, None, exception=2)
    put_grade(state, column, third, None, exception=7)
    with capture_logs() as logs:
        snapshot = await source.read_course(section)
    uid = {e["id"]: str(e["uid"]) for e in (first, second, third)}
    scores = {s.student_id: s for s in snapshot.scores if s.assignment_id == str(column)}
    assert scores[uid[first["id"]]].excused
    assert scores[uid[second["id"]]].graded and scores[uid[second["id"]]].score == 0.0
    unreadable = scores[uid[third["id"]]]  # neither missing, nor excused, nor "not graded": held, with its reason
    assert unreadable.unreadable and "exception 7" in unreadable.unreadable and unreadable.score is None
    assert not (unreadable.missing or unreadable.excused or unreadable.graded)
    record = next(r for r in source.unread[section] if r.source_id == f"{column}:{third['id']}")
    assert record.kind == "grade" and "exception 7" in record.reason
    assert any(e["event"] == "schoology_record_not_read" and e["record"] == f"{column}:{third['id']}"
               and "exception 7" in e["reason"] for e in logs)


def test_the_emulator_refuses_an_undocumented_exception(schoology_district: SchoologyDistrict) -> None:
    section, state = section_of(schoology_district), schoology_district.schoology.state
    column = add_grade_item(state, section, "assignment", "Lab 10")["id"]
    one, two = students(state, section)[:2]
    with httpx.Client(auth=OAuth1(SCHOOLOGY_KEY, SCHOOLOGY_SECRET)) as client:
        answer = client.put(f"{schoology_district.schoology.url}/v1/sections/{section}/grades", json={"grades": {"grade": [
            {"type": "assignment", "assignment_id": column, "enrollment_id": one["id"], "exception": 3},
            {"type": "assignment", "assignment_id": column, "enrollment_id": two["id"], "grade": 8}]}})
    assert [r["response_code"] for r in answer.json()["grades"]["grade"]] == [400, 200]
    assert f"{column}:{one['id']}" not in state["grades"] and state["grades"][f"{column}:{two['id']}"]["grade"] == 8.0


# --- Assignment type: assessments and graded discussions -----------------------------------


@pytest.mark.anyio
async def test_assessments_and_graded_discussions_are_read(schoology_district: SchoologyDistrict,
                                                           source: SchoologySource) -> None:
    section, state = section_of(schoology_district), schoology_district.schoology.state
    quiz = add_grade_item(state, section, "assessment", "Unit 2 Quiz", max_points="20", due="2026-10-20 23:59:00")
    talk = add_grade_item(state, section, "discussion", "Debate", max_points="5", due="2026-10-21 23:59:00")
    odd = add_grade_item(state, section, "assignment", "Scorm Pack", max_points="5")
    odd["type"] = "scorm"  # not a type Schoology documents for a grade item
    enrolled = students(state, section)
    put_grade(state, quiz["id"], enrolled[0], 17.0)
    put_grade(state, talk["id"], enrolled[0], 4.0)
    put_grade(state, odd["id"], enrolled[0], 5.0)

    snapshot = await source.read_course(section)
    read = {a.source_id: (a.name, a.points_possible) for a in snapshot.assignments}
    assert read[str(quiz["id"])] == ("Unit 2 Quiz", 20.0) and read[str(talk["id"])] == ("Debate", 5.0)
    odd_item = next(a for a in snapshot.assignments if a.source_id == str(odd["id"]))
    assert odd_item.unreadable and "'scorm'" in odd_item.unreadable  # in the snapshot, to be reported as skipped
    student = str(enrolled[0]["uid"])
    graded = {(s.assignment_id, s.student_id): s.score for s in snapshot.scores if s.graded}
    assert graded[(str(quiz["id"]), student)] == 17.0 and graded[(str(talk["id"]), student)] == 4.0
    assert not [s for s in snapshot.scores if s.assignment_id == str(odd["id"])]
    skipped = [r for r in source.unread[section] if r.source_id == str(odd["id"])]
    assert len(skipped) == 1 and skipped[0].kind == "grade item" and "'scorm'" in skipped[0].reason
    assert not [r for r in source.unread[section] if r.source_id.startswith(f"{odd['id']}:")]


def test_the_emulator_lists_columns_as_documented(schoology_district: SchoologyDistrict) -> None:
    section, state = section_of(schoology_district), schoology_district.schoology.state
    quiz = add_grade_item(state, section, "assessment", "Unit 3 Quiz")
    talk = add_grade_item(state, section, "discussion", "Forum")
    put_grade(state, talk["id"], students(state, section)[0], 3.0)
    base = f"{schoology_district.schoology.url}/v1/sections/{section}"
    with httpx.Client(auth=OAuth1(SCHOOLOGY_KEY, SCHOOLOGY_SECRET)) as client:
        assignments = client.get(f"{base}/assignments", params={"limit": 200}).json()["assignment"]
        items = client.get(f"{base}/grade_items", params={"limit": 200}).json()["assignment"]
        threads = client.get(f"{base}/discussions").json()["discussion"]
        grades = client.get(f"{base}/grades", params={"assignment_id": talk["id"]}).json()["grades"]["grade"]
    assert {a["id"]: a["type"] for a in assignments}[quiz["id"]] == "assessment"
    assert talk["id"] not in {a["id"] for a in assignments}
    assert {a["id"]: a["type"] for a in items}[talk["id"]] == "discussion"
    assert [(t["id"], t["grade_item_id"], t["graded"]) for t in threads] == [(talk["grade_item_id"], talk["id"], 1)]
    assert [(g["assignment_id"], g["type"]) for g in grades] == [(talk["id"], "discussion")]
    assert grades[0]["location"].endswith(f"/discussions/{talk['grade_item_id']}")


@pytest.mark.anyio
async def test_a_graded_discussion_is_edited_as_a_discussion(schoology_district: SchoologyDistrict,
                                                             source: SchoologySource) -> None:
    section, state = section_of(schoology_district), schoology_district.schoology.state
    talk = add_grade_item(state, section, "discussion", "Forum", max_points="5")
    await source.read_course(section)
    await source.update_assignment(section, str(talk["id"]), AssignmentChanges(name="Forum (graded)"))
    assert state["assignments"][str(talk["id"])]["title"] == "Forum (graded)"
    assert [w[2] for w in writes_to(schoology_district.schoology, "PUT", f"/discussions/{talk['grade_item_id']}")] == [
        {"title": "Forum (graded)"}]
