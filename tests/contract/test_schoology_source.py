"""Schoology source (S2) against the Schoology emulator: the shared source contract plus
Schoology's own OAuth 1.0a, replay refusal, paging and rate limit.

The truth follows Schoology's documentation: every gradebook column (assignment,
assessment, graded discussion) is an assignment; exception 1 is excused, 2 incomplete
(a 0); Schoology documents no "missing" exception, so no score is ever read as missing,
and a grade with an undocumented code is not read at all (test_schoology_docs.py checks
that it is reported)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from passback.connectors.schoology.client import SchoologyClient
from passback.connectors.schoology.source import SchoologySource
from passback.emulators.schoology import GRADE_ITEM_TYPES, REPLAY_TEXT
from passback.errors import SourceError
from passback.testing.sources import SourceContract
from tests.conftest import SCHOOLOGY_KEY, SCHOOLOGY_SECRET, SchoologyDistrict


def schoology_truth(state: dict[str, Any]) -> dict[str, Any]:
    courses: dict[str, Any] = {}
    for section in state["sections"].values():
        sid = section["id"]
        enrolled = {e["id"]: e for e in state["enrollments"].values() if e["section_id"] == sid and e["admin"] == 0}
        assignments = {a["id"]: a for a in state["assignments"].values() if a["section_id"] == sid
                       and a.get("type", "assignment") in GRADE_ITEM_TYPES}
        grades = [g for g in state["grades"].values() if g["assignment_id"] in assignments
                  and str(g["enrollment_id"]) in enrolled]
        uid = {int(k): str(e["uid"]) for k, e in enrolled.items()}
        points = {(str(g["assignment_id"]), uid[g["enrollment_id"]]): 0.0 if g["exception"] == 2 else g["grade"]
                  for g in grades if g["exception"] == 2 or (g["exception"] == 0 and g["grade"] is not None)}
        courses[sid] = {
            "section_sis_ids": [section["section_school_code"]],
            "student_sis_ids": [state["users"][str(e["uid"])]["school_uid"] for e in enrolled.values()],
            "assignments": {str(a["id"]): (a["title"], float(a["max_points"]) if a["max_points"] else None)
                            for a in assignments.values()},
            "graded_scores": points,
            "excused": {(str(g["assignment_id"]), uid[g["enrollment_id"]]) for g in grades if g["exception"] == 1},
            "missing": set(),
            "imported_categories": {},
        }
    return {"courses": courses}


@pytest.fixture
async def source(schoology_district: SchoologyDistrict) -> AsyncIterator[SchoologySource]:
    client = SchoologyClient(schoology_district.schoology.url, SCHOOLOGY_KEY, SCHOOLOGY_SECRET)
    yield SchoologySource(client)
    await client.aclose()


@pytest.fixture
def truth(schoology_district: SchoologyDistrict) -> dict[str, Any]:
    return schoology_truth(schoology_district.schoology.state)


class TestSchoologyContract(SourceContract):
    pass


def test_plaintext_signature_and_replayed_nonce(schoology_district: SchoologyDistrict) -> None:
    header = (f'OAuth realm="Schoology API", oauth_consumer_key="{SCHOOLOGY_KEY}", oauth_token="", oauth_nonce="n1", '
              'oauth_timestamp="1700000000", oauth_signature_method="PLAINTEXT", oauth_version="1.0", '
              f'oauth_signature="{SCHOOLOGY_SECRET}%26"')
    url = f"{schoology_district.schoology.url}/v1/users/me"
    first = httpx.get(url, headers={"Authorization": header})
    assert first.status_code == 303 and first.headers["location"].endswith("/v1/users/" + str(
        schoology_district.schoology.state["consumers"][SCHOOLOGY_KEY]["uid"]))
    replay = httpx.get(url, headers={"Authorization": header})
    assert replay.status_code == 401 and replay.text == REPLAY_TEXT
    wrong = httpx.get(url, headers={"Authorization": header.replace("n1", "n2").replace(SCHOOLOGY_SECRET, "nope")})
    assert wrong.status_code == 401


@pytest.mark.anyio
async def test_bad_key_names_the_fix(schoology_district: SchoologyDistrict) -> None:
    client = SchoologyClient(schoology_district.schoology.url, SCHOOLOGY_KEY, "wrong-secret")
    try:
        with pytest.raises(SourceError, match="consumer key and secret"):
            await SchoologySource(client).list_course_ids()
    finally:
        await client.aclose()


def test_paging_links_follow_schoology(schoology_district: SchoologyDistrict) -> None:
    from passback.connectors.schoology.client import OAuth1

    section = next(iter(schoology_district.schoology.state["sections"]))
    with httpx.Client(auth=OAuth1(SCHOOLOGY_KEY, SCHOOLOGY_SECRET)) as client:
        page = client.get(f"{schoology_district.schoology.url}/v1/sections/{section}/assignments",
                          params={"start": 0, "limit": 3}).json()
        assert len(page["assignment"]) == 3 and isinstance(page["total"], int)
        assert "start=3" in page["links"]["next"]
        enrollments = client.get(f"{schoology_district.schoology.url}/v1/sections/{section}/enrollments").json()
        assert isinstance(enrollments["total"], str) and "next" not in enrollments["links"]
        assert client.get(f"{schoology_district.schoology.url}/v1/sections/999/enrollments").content == b""


@pytest.mark.anyio
async def test_rate_limit_is_waited_out(schoology_district: SchoologyDistrict, source: SchoologySource) -> None:
    schoology_district.schoology.control("faults", {"rate_limit": 4})
    source.client.http.policy.initial_wait = 0.5
    course = next(iter(schoology_district.schoology.state["sections"]))
    snapshot = await source.read_course(course)
    assert snapshot.assignments
    assert schoology_district.schoology.control("stats")["rate_limited"] > 0
