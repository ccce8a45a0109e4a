"""Courseware source (S4) against the courseware emulator over real HTTP: the shared source
contract, with the truth computed here from the emulator's raw state (not by the connector's
scoring function), plus the courseware's own paging, auth, faults and instructor writes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from passback.connectors.courseware.client import CoursewareClient
from passback.connectors.courseware.source import CATEGORY_ID, COURSE_SCORE_ID, CoursewareSource
from passback.emulators import courseware as courseware_emulator
from passback.emulators.faults import FaultConfig
from passback.errors import SourceError
from passback.sandbox.courseware_district import courseware_token, generate_courseware
from passback.testing.sources import SourceContract
from tests.conftest import ServedApp

PAGE_LIMIT = 3


def hand_score(state: dict[str, Any], course_id: int, user_id: int) -> float | None:
    """A student's course score worked out from the raw rows, as seed 002 reads (None: not started)."""
    pages = {p["id"]: p["points"] for p in state["pages"].values() if p["course_id"] == course_id}
    activities = {a["id"]: a for a in state["activities"].values() if a["course_id"] == course_id}
    done = [c["page_id"] for c in state["completions"].values() if c["user_id"] == user_id and c["page_id"] in pages]
    tries = [a for a in state["attempts"].values() if a["user_id"] == user_id and a["activity_id"] in activities]
    if not done and not tries:
        return None
    total = sum(pages[p] for p in done)
    for activity_id, activity in activities.items():
        mine = [a for a in tries if a["activity_id"] == activity_id]
        if not mine:
            continue
        last = max(mine, key=lambda a: a["attempt"])
        if last["score"] is None:
            continue
        if activity["kind"] == "quiz":
            total += last["score"]
        elif last["points_possible_at_attempt"]:
            total += last["score"] / last["points_possible_at_attempt"] * activity["points_possible"]
        else:
            total += activity["points_possible"]
    return round(total, 4)


def courseware_truth(state: dict[str, Any]) -> dict[str, Any]:
    courses: dict[str, Any] = {}
    for course in state["courses"].values():
        cid = course["id"]
        students = [e["user_id"] for e in state["enrollments"].values()
                    if e["course_id"] == cid and e["role"] == "student" and e["status"] == "active"]
        possible = sum(p["points"] for p in state["pages"].values() if p["course_id"] == cid) + sum(
            a["points_possible"] for a in state["activities"].values() if a["course_id"] == cid)
        scores = {(COURSE_SCORE_ID, str(u)): hand_score(state, cid, u) for u in students}
        courses[str(cid)] = {
            "section_sis_ids": [s["sis_id"] for s in course["sections"]],
            "student_sis_ids": [state["users"][str(u)]["sis_id"] for u in students],
            "assignments": {COURSE_SCORE_ID: (course["gradebook_title"], float(possible))},
            "graded_scores": {k: v for k, v in scores.items() if v is not None},
            "excused": set(),
            "missing": set(),
            "imported_categories": {},  # the one category is mapped per course, never imported
        }
    return {"courses": courses}


@pytest.fixture
def courseware() -> Iterator[ServedApp]:
    state = generate_courseware(seed=3, courses=2, students=7, pages=5, activities=6)
    with ServedApp(courseware_emulator.create_app(state, faults=FaultConfig(seed=9))) as served:
        yield served


@pytest.fixture
async def source(courseware: ServedApp) -> AsyncIterator[CoursewareSource]:
    client = CoursewareClient(courseware.url, courseware_token(courseware.state), page_limit=PAGE_LIMIT)
    yield CoursewareSource(client)
    await client.aclose()


@pytest.fixture
def truth(courseware: ServedApp) -> dict[str, Any]:
    return courseware_truth(courseware.state)


class TestCoursewareContract(SourceContract):
    pass


def api(courseware: ServedApp, method: str, path: str, body: Any = None) -> httpx.Response:
    """What an instructor does in the courseware's own screens, through its API."""
    return httpx.request(method, f"{courseware.url}/api/v1{path}", json=body,
                         headers={"Authorization": f"Bearer {courseware_token(courseware.state)}"})


def first_course(courseware: ServedApp) -> dict[str, Any]:
    return courseware.state["courses"][str(min(int(c) for c in courseware.state["courses"]))]


@pytest.mark.anyio
async def test_the_course_is_one_column_in_one_category(courseware: ServedApp, source: CoursewareSource) -> None:
    course = first_course(courseware)
    snapshot = await source.read_course(str(course["id"]))
    (column,) = snapshot.assignments
    assert column.category_id == CATEGORY_ID and [c.source_id for c in snapshot.categories] == [CATEGORY_ID]
    assert column.due_at is not None and column.due_at.date().isoformat() == course["due_date"]
    assert not any(s.graded for s in snapshot.scores if hand_score(courseware.state, course["id"], int(s.student_id))
                   is None)  # not started: no score, not a zero
    assert any(not s.graded for s in snapshot.scores)


@pytest.mark.anyio
async def test_progress_comes_from_one_paged_listing(courseware: ServedApp, source: CoursewareSource) -> None:
    course = first_course(courseware)
    before = courseware.control("stats")["requests"]
    snapshot = await source.read_course(str(course["id"]))
    after = courseware.control("stats")["requests"]
    key = "GET /api/v1/courses/{course_id}/progress"
    assert after[key] - before.get(key, 0) == -(-len(snapshot.students) // PAGE_LIMIT)
    assert not any("/students/{user_id}/progress" in k for k in after)  # never a request per student


def test_paging_answers_carry_total_and_next(courseware: ServedApp) -> None:
    course = first_course(courseware)
    first = api(courseware, "GET", f"/courses/{course['id']}/enrollments?role=student&limit=2").json()
    assert first["paging"]["total"] == 7 and len(first["data"]) == 2
    assert first["paging"]["next"].startswith(courseware.url) and "role=student" in first["paging"]["next"]
    rows = list(first["data"])
    following = first["paging"]["next"]
    while following:
        page = httpx.get(following, headers={"Authorization": f"Bearer {courseware_token(courseware.state)}"}).json()
        rows.extend(page["data"])
        following = page["paging"]["next"]
    assert len(rows) == 7 and {r["role"] for r in rows} == {"student"}


@pytest.mark.anyio
async def test_bad_token_names_the_fix(courseware: ServedApp) -> None:
    client = CoursewareClient(courseware.url, "wrong-token")
    try:
        with pytest.raises(SourceError, match="refused the API token.*new token"):
            await CoursewareSource(client).list_course_ids()
    finally:
        await client.aclose()
    async with httpx.AsyncClient() as bare:
        answer = await bare.get(f"{courseware.url}/api/v1/courses")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
    assert answer.headers["www-authenticate"] == 'Bearer realm="courseware"'


@pytest.mark.anyio
async def test_transient_faults_are_retried(courseware: ServedApp, source: CoursewareSource) -> None:
    courseware.control("faults", {"fault_rate": 0.3, "fault_kinds": ["429", "500", "reset"], "seed": 4})
    source.client.http.policy.initial_wait = 0.01
    course = first_course(courseware)
    snapshot = await source.read_course(str(course["id"]))
    courseware.control("faults", {"fault_rate": 0})
    expected = courseware_truth(courseware.state)["courses"][str(course["id"])]
    graded = {(s.assignment_id, s.student_id): s.score for s in snapshot.scores if s.graded}
    assert graded == expected["graded_scores"]
    assert courseware.faults.log and source.client.http.stats.retries >= len(courseware.faults.log)


@pytest.mark.anyio
async def test_changing_a_quiz_does_not_regrade_its_attempts(courseware: ServedApp, source: CoursewareSource) -> None:
    course = first_course(courseware)
    quiz = next(a for a in courseware.state["activities"].values() if a["course_id"] == course["id"]
                and a["kind"] == "quiz" and any(t["activity_id"] == a["id"] for t in courseware.state["attempts"].values()))
    before = {s.student_id: s.score for s in (await source.read_course(str(course["id"]))).scores}
    answer = api(courseware, "PUT", f"/courses/{course['id']}/activities/{quiz['id']}/points", {"points_possible": 50})
    assert answer.status_code == 200 and answer.json()["points_possible"] == 50.0
    after = await source.read_course(str(course["id"]))
    assert {s.student_id: s.score for s in after.scores} == before  # attempts keep the score they were given
    assert after.assignments[0].points_possible == courseware_truth(courseware.state)["courses"][
        str(course["id"])]["assignments"][COURSE_SCORE_ID][1]
    write = courseware.writes[-1]
    assert (write.method, write.json()) == ("PUT", {"points_possible": 50})


def test_instructor_writes_refuse_bad_points_with_the_field(courseware: ServedApp) -> None:
    course = first_course(courseware)
    page = next(p for p in courseware.state["pages"].values() if p["course_id"] == course["id"])
    for body in ({"points": -1}, {"points": "5"}, {}):
        answer = api(courseware, "PUT", f"/courses/{course['id']}/pages/{page['id']}/points", body)
        assert answer.status_code == 422 and answer.json()["error"] == {
            "code": "invalid", "message": "points must be a number of 0 or more.", "field": "points"}
    assert api(courseware, "PUT", f"/courses/{course['id']}/pages/999999/points", {"points": 1}).status_code == 404
    assert courseware.writes == []  # refusals are not accepted writes


@pytest.mark.anyio
async def test_a_point_value_that_is_not_a_number_is_reported_not_guessed(courseware: ServedApp,
                                                                          source: CoursewareSource) -> None:
    course = first_course(courseware)
    page = next(p for p in courseware.state["pages"].values() if p["course_id"] == course["id"])
    page["points"] = "five"  # a state loaded from elsewhere; the API itself refuses it
    snapshot = await source.read_course(str(course["id"]))
    (column,) = snapshot.assignments
    assert column.unreadable is not None and "'five'" in column.unreadable and not snapshot.scores
    with pytest.raises(SourceError, match="cannot be computed"):
        await source.student_scores(str(course["id"]))


@pytest.mark.anyio
async def test_passback_mode_and_student_view(courseware: ServedApp, source: CoursewareSource) -> None:
    ids = sorted(courseware.state["courses"], key=int)
    assert [await source.passback_mode(c) for c in ids] == ["automatic", "manual"]
    assert api(courseware, "PUT", f"/courses/{ids[0]}/settings", {"passback_mode": "sometimes"}).status_code == 422
    assert api(courseware, "PUT", f"/courses/{ids[0]}/settings", {"passback_mode": "manual"}).status_code == 200
    assert await source.passback_mode(ids[0]) == "manual"
    scores = await source.student_scores(ids[0])
    cid = int(ids[0])
    for row in scores.students:
        expected = hand_score(courseware.state, cid, int(row.student.source_id))
        assert row.detail.started == (expected is not None)
        assert (row.detail.earned if row.detail.started else None) == expected
        done = {c["page_id"] for c in courseware.state["completions"].values()
                if c["user_id"] == int(row.student.source_id)}
        assert set(row.detail.pages_completed) == {str(p) for p in done}
    one = scores.students[2].student.source_id
    single = await source.student_scores(ids[0], one)
    assert [s.student.source_id for s in single.students] == [one]
    with pytest.raises(SourceError, match="no such record"):
        await source.student_scores(ids[0], "424242")
