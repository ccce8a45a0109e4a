"""Canvas source (S1) against the Canvas emulator: the shared contract plus Canvas's own
paging, throttling and auth behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from passback.errors import SourceError
from passback.connectors.canvas.client import CanvasClient
from passback.connectors.canvas.source import CanvasSource
from tests.conftest import District
from passback.testing.sources import SourceContract


def canvas_truth(state: dict[str, Any]) -> dict[str, Any]:
    courses: dict[str, Any] = {}
    for course in state["courses"].values():
        cid = course["id"]
        sections = [s for s in state["sections"].values() if s["course_id"] == cid]
        enrolled = [e for e in state["enrollments"].values()
                    if e["course_id"] == cid and e["type"] == "StudentEnrollment"]  # teachers and TAs are not read
        assignments = {a["id"]: a for a in state["assignments"].values() if a["course_id"] == cid and a["published"]}
        subs = [s for s in state["submissions"].values() if s["assignment_id"] in assignments]
        courses[str(cid)] = {
            "section_sis_ids": [s["sis_section_id"] for s in sections],
            "student_sis_ids": [state["users"][str(e["user_id"])]["sis_user_id"] for e in enrolled],
            "assignments": {str(a["id"]): (a["name"], a["points_possible"]) for a in assignments.values()},
            "graded_scores": {(str(s["assignment_id"]), str(s["user_id"])): s["score"]
                              for s in subs if s["score"] is not None and not s["excused"]},
            "excused": {(str(s["assignment_id"]), str(s["user_id"])) for s in subs if s["excused"]},
            "missing": {(str(s["assignment_id"]), str(s["user_id"])) for s in subs if s["missing"]},
            "imported_categories": {str(g["id"]): g["sis_source_id"] for g in state["assignment_groups"].values()
                                    if g["course_id"] == cid and g["sis_source_id"] is not None},
        }
    return {"courses": courses}


def assert_snapshot_is_truth(snapshot: Any, expected: dict[str, Any]) -> None:
    """A course read under faults or throttling is the course the emulator holds, whole."""
    assert {a.source_id: (a.name, a.points_possible) for a in snapshot.assignments} == expected["assignments"]
    graded = {(s.assignment_id, s.student_id): s.score for s in snapshot.scores if s.graded and not s.excused}
    assert graded == expected["graded_scores"]
    assert {(s.assignment_id, s.student_id) for s in snapshot.scores if s.excused} == expected["excused"]
    assert {(s.assignment_id, s.student_id) for s in snapshot.scores if s.missing} == expected["missing"]
    assert sorted(s.sis_id for s in snapshot.students) == sorted(expected["student_sis_ids"])


@pytest.fixture
async def source(district: District) -> AsyncIterator[CanvasSource]:
    client = CanvasClient(district.canvas.url, district.credentials.canvas_token, per_page=7)
    yield CanvasSource(client)
    await client.aclose()


@pytest.fixture
def truth(district: District) -> dict[str, Any]:
    return canvas_truth(district.canvas.state)


class TestCanvasContract(SourceContract):
    pass


@pytest.mark.anyio
async def test_submissions_come_from_one_paged_listing_per_section(district: District, source: CanvasSource) -> None:
    """A full read pages each section's submissions side by side: as many requests as one listing, never one per student."""
    course_id = next(iter(district.canvas.state["courses"]))
    before = district.canvas.control("stats")["requests"]
    snapshot = await source.read_course(course_id)
    after = district.canvas.control("stats")["requests"]
    key = "GET /api/v1/sections/{section_id}/students/submissions"
    pages = after.get(key, 0) - before.get(key, 0)
    in_section = {s.source_id: {e.student_id for e in snapshot.enrollments if e.section_id == s.source_id}
                  for s in snapshot.sections}
    assert len(in_section) > 1
    assert pages == sum(-(-sum(1 for x in snapshot.scores if x.student_id in members) // 7)  # ceil, per section
                        for members in in_section.values())
    assert after.get("GET /api/v1/courses/{course_id}/students/submissions", 0) == before.get(
        "GET /api/v1/courses/{course_id}/students/submissions", 0)
    assert not any("/submissions/{user_id}" in k for k in after)  # never a request per student


@pytest.mark.anyio
async def test_link_header_paging_matches_canvas(district: District) -> None:
    course_id = next(iter(district.canvas.state["courses"]))
    response = httpx.get(f"{district.canvas.url}/api/v1/courses/{course_id}/assignments",
                         params={"per_page": 2, "include[]": "overrides"},
                         headers={"Authorization": f"Bearer {district.credentials.canvas_token}"})
    rels = [part.split('rel="')[1].rstrip('"') for part in response.headers["link"].split(",")]
    assert rels == ["current", "next", "first", "last"]
    assert response.links["next"]["url"].startswith(district.canvas.url)
    assert "include%5B%5D=overrides" in response.links["next"]["url"]
    assert float(response.headers["x-rate-limit-remaining"]) < 600
    assert float(response.headers["x-request-cost"]) > 0


@pytest.mark.anyio
async def test_throttling_slows_the_client_down_instead_of_failing(district: District) -> None:
    # A tiny bucket: Canvas would refuse with 403 "Rate Limit Exceeded" after a few requests.
    district.canvas.control("throttle", {"hwm": 120, "outflow": 60, "up_front": 50, "request_cost": 10})
    client = CanvasClient(district.canvas.url, district.credentials.canvas_token, per_page=5)
    client.throttle.low_water = 110
    client.throttle.outflow = 60
    try:
        source = CanvasSource(client)
        course_id = next(iter(district.canvas.state["courses"]))
        snapshot = await source.read_course(course_id)
    finally:
        await client.aclose()
    assert_snapshot_is_truth(snapshot, canvas_truth(district.canvas.state)["courses"][course_id])
    assert client.throttle.paused_seconds > 0  # it paced itself from X-Rate-Limit-Remaining
    stats = district.canvas.control("stats")
    assert client.http.stats.by_status.get(403, 0) == stats["throttled"]  # any refusal was retried


@pytest.mark.anyio
async def test_bad_token_names_the_fix(district: District) -> None:
    client = CanvasClient(district.canvas.url, "wrong-token")
    try:
        with pytest.raises(SourceError, match="Invalid access token.*new token"):
            await CanvasSource(client).list_course_ids()
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_transient_faults_are_retried(district: District, source: CanvasSource) -> None:
    district.canvas.control("faults", {"fault_rate": 0.3, "fault_kinds": ["429", "500", "reset"], "seed": 3})
    source.client.throttle.max_pause = 0.05
    source.client.http.policy.initial_wait = 0.01
    course_id = next(iter(district.canvas.state["courses"]))
    snapshot = await source.read_course(course_id)
    district.canvas.control("faults", {"fault_rate": 0})
    expected = canvas_truth(district.canvas.state)["courses"][course_id]
    assert len(snapshot.scores) == len(expected["graded_scores"]) + \
        sum(1 for s in district.canvas.state["submissions"].values()
            if str(s["assignment_id"]) in expected["assignments"] and s["score"] is None)
    assert_snapshot_is_truth(snapshot, expected)
    faults = district.canvas.faults.log  # the seed decides which requests are faulted: the same every run
    assert {f.kind for f in faults} == {"429", "500", "reset"}, [f.as_dict() for f in faults]
    assert source.client.http.stats.retries >= len(faults)  # every fault was met by a retry
