"""LTI Advantage AGS destination (D4) against the Canvas emulator as the platform, over loopback.

The tool key is made here and published the way passback publishes it (a JWKS at a URL
the developer key names); the emulator fetches it to check every client assertion. The
destination contract runs whole, but for three cases written for PowerTeacher Pro's
fields and words, which are replaced below by their AGS form (late and exempt are not
fields AGS holds; a student outside the course and an over-long name are refused in
Canvas's words). Every check reads the emulator's raw state or its write log, never
the connector. At the end, the client's assertion is checked by a platform we did not
write: ``lti1p3platform``'s token endpoint, in process, and its AGS service over HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from passback.connectors.http import RetryPolicy
from passback.connectors.lti_ags.client import (
    ASSERTION_TYPE,
    LINEITEMS,
    MEMBERSHIPS,
    SCOPES,
    AgsClient,
    client_assertion,
)
from passback.connectors.lti_ags.destination import LEARNER, LtiAgsDestination, resource_id
from passback.connectors.registry import DESTINATION, HttpOptions, kind_of, open_connector
from passback.errors import AuthRefused, DestinationError
from passback.model.values import ScorePayload, ScoreWrite
from passback.testing.gradebook import DestinationContract, HeldAssignment, payload_for
from tests.conftest import District, ServedApp

LINE_ITEMS_PATH = "/api/lti/courses/{course}/line_items"
FAST = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05)


@pytest.fixture(scope="module")
def tool_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, private=True, auto_kid=True)


def public_jwk(key: RSAKey) -> dict[str, Any]:
    public = key.as_dict(private=False)
    public.update(kid=key.kid, use="sig", alg="RS256")
    return public


@pytest.fixture
def jwks_server(tool_key: RSAKey) -> Iterator[ServedApp]:
    """passback's ``/lti/jwks`` as the platform sees it: the tool's public key set at a URL."""

    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [public_jwk(tool_key)]})

    with ServedApp(Starlette(routes=[Route("/lti/jwks", jwks)])) as served:
        yield served


def developer_key(jwk_url: str | None = None, jwk: dict[str, Any] | None = None,
                  scopes: tuple[str, ...] = SCOPES) -> dict[str, Any]:
    """A developer key configuration as a tool pastes it into Canvas."""
    config: dict[str, Any] = {
        "title": "Grade Sync", "oidc_initiation_url": "https://grades.sandbox.example/lti/login",
        "target_link_uri": "https://grades.sandbox.example/lti/launch", "scopes": list(scopes),
        "extensions": [{"platform": "canvas.instructure.com", "privacy_level": "public", "settings": {"placements": []}}],
    }
    if jwk_url:
        config["public_jwk_url"] = jwk_url
    if jwk:
        config["public_jwk"] = jwk
    return config


def register(canvas: ServedApp, config: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{canvas.url}/_emulator/lti/developer_keys", json=config)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.fixture
def registration(district: District, jwks_server: ServedApp) -> dict[str, Any]:
    return register(district.canvas, developer_key(jwk_url=f"{jwks_server.url}/lti/jwks"))


def ags_client(district: District, registration: dict[str, Any], key: RSAKey,
               scopes: tuple[str, ...] = SCOPES, kid: str | None = None) -> AgsClient:
    return AgsClient(district.canvas.url, registration["client_id"], registration["auth_token_url"],
                     key.as_pem(private=True).decode(), kid or str(key.kid), scopes=scopes, policy=FAST)


@pytest.fixture
async def destination(district: District, registration: dict[str, Any],
                      tool_key: RSAKey) -> AsyncIterator[LtiAgsDestination]:
    destination = LtiAgsDestination(ags_client(district, registration, tool_key))
    yield destination
    await destination.aclose()


def _first_course(state: dict[str, Any]) -> int:
    return min(c["id"] for c in state["courses"].values())


def _students(state: dict[str, Any], course: int) -> list[int]:
    return sorted(e["user_id"] for e in state["enrollments"].values()
                  if e["course_id"] == course and e["type"] == "StudentEnrollment")


def sub(district: District, user_id: int) -> str:
    platform = district.canvas.app.state.lti_platform
    return str(platform.subject(district.canvas.state["users"][str(user_id)]))


@pytest.fixture
def setup(district: District) -> dict[str, Any]:
    state = district.canvas.state
    course = _first_course(state)
    other_course = min(c["id"] for c in state["courses"].values() if c["id"] != course)
    return {
        "course_id": course,
        "section_ids": [district.canvas.url + LINE_ITEMS_PATH.format(course=course)],
        "categories": {},
        "inactive_categories": {},
        "enrolled_student": sub(district, _students(state, course)[0]),
        "second_student": sub(district, _students(state, course)[1]),
        "other_student": sub(district, _students(state, other_course)[0]),
    }


class CanvasAgsBackdoor:
    """The Canvas emulator's raw state and write log, read as the contract needs them."""

    def __init__(self, district: District) -> None:
        self.district = district
        self.served = district.canvas

    @property
    def lti(self) -> dict[str, Any]:
        return dict(self.served.state["lti"])

    def _item_id(self, url: str) -> str:
        return urlsplit(url).path.rstrip("/").rsplit("/", 1)[1]

    def _url(self, item: dict[str, Any]) -> str:
        return f"{self.served.url}{LINE_ITEMS_PATH.format(course=item['course_id'])}/{item['id']}"

    def _live_items(self) -> list[dict[str, Any]]:
        assignments = self.served.state["assignments"]
        return [i for i in self.lti["line_items"].values() if str(i["assignment_id"]) in assignments]

    def lose_answers(self, method: str) -> None:
        self.served.control("faults", {"fault_rate": 1.0, "fault_kinds": ["reset"], "only_methods": [method]})

    def answer_again(self) -> None:
        self.served.control("faults", {"fault_rate": 0})

    def delete_assignment(self, dest_id: str) -> None:
        """A teacher deletes the gradebook column in Canvas (the assignments API, with the district's token)."""
        item = self.lti["line_items"][self._item_id(dest_id)]
        answer = httpx.delete(f"{self.served.url}/api/v1/courses/{item['course_id']}/assignments/{item['assignment_id']}",
                              headers={"Authorization": f"Bearer {self.district.credentials.canvas_token}"})
        assert answer.status_code == 200, answer.text

    def assignments_named(self, name: str) -> int:
        assignments = self.served.state["assignments"]
        return sum(1 for i in self._live_items() if assignments[str(i["assignment_id"])]["name"] == name)

    def held_assignment(self, dest_id: str) -> HeldAssignment | None:
        item = self.lti["line_items"].get(self._item_id(dest_id))
        assignment = self.served.state["assignments"].get(str(item["assignment_id"])) if item else None
        if item is None or assignment is None:
            return None
        container = self.served.url + LINE_ITEMS_PATH.format(course=item["course_id"])
        return HeldAssignment(name=assignment["name"], due_date=(assignment["due_at"] or "")[:10],
                              points_possible=assignment["points_possible"],
                              section_assignment_ids={container: self._url(item)}, category_ids={})

    def held_scores(self) -> dict[tuple[str, str], ScorePayload]:
        """The gradebook's grades (the submissions of line items' assignments), with the results' comments."""
        held = {}
        submissions, results = self.served.state["submissions"], self.lti["results"]
        for item in self._live_items():
            for key, submission in submissions.items():
                if submission["assignment_id"] != item["assignment_id"] or submission.get("score") is None:
                    continue
                user_id = int(key.split(":")[1])
                result = results.get(f"{item['id']}:{user_id}") or {}
                held[(self._url(item), sub(self.district, user_id))] = ScorePayload(
                    points=submission["score"], comment=result.get("comment"))
        return held

    def accepted_creates(self, name: str) -> int:
        return sum(1 for w in self.served.writes
                   if w.method == "POST" and w.path.endswith("/line_items") and (w.json() or {}).get("label") == name)

    def accepted_score_writes(self, section_assignment_id: str, student_id: str) -> int:
        path = urlsplit(section_assignment_id).path + "/scores"
        return sum(1 for w in self.served.writes
                   if w.method == "POST" and w.path == path and (w.json() or {}).get("userId") == student_id)


@pytest.fixture
def backdoor(district: District) -> CanvasAgsBackdoor:
    return CanvasAgsBackdoor(district)


class TestLtiAgsContract(DestinationContract):
    """The shared suite; the three PowerTeacher Pro-worded cases in their AGS form."""

    @pytest.mark.anyio
    async def test_scores_are_upserts_and_blanks_clear(self, destination: LtiAgsDestination, setup: dict[str, Any],
                                                       backdoor: CanvasAgsBackdoor) -> None:
        ctx = await destination.load_context(setup["section_ids"])
        created = await destination.create_assignment(ctx, payload_for(setup, "Lab 2"))
        section = setup["section_ids"][0]
        asid = created.section_assignment_ids[section]
        student = setup["enrolled_student"]
        late = ScorePayload(points=18.5, late=True)  # AGS has no late flag: the points go, lateness is Canvas's own
        assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, late)]) == []
        assert backdoor.held_scores() == {(asid, student): ScorePayload(points=18.5)}
        assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, ScorePayload(points=19.0))]) == []
        assert backdoor.held_scores() == {(asid, student): ScorePayload(points=19.0)}  # replaced, not added
        assert backdoor.accepted_score_writes(asid, student) == 2
        assert (await destination.read_scores(ctx, setup["section_ids"])) == backdoor.held_scores()
        commented = ScorePayload(points=17.0, comment="Redo the graph.")
        assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, commented)]) == []
        assert backdoor.held_scores() == {(asid, student): commented}
        assert (await destination.read_scores(ctx, setup["section_ids"])) == backdoor.held_scores()
        excused = ScorePayload(points=None, exempt=True)  # AGS holds no "excused": the grade is taken away
        assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, excused)]) == []
        assert backdoor.held_scores() == {}
        assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, ScorePayload(points=12.0))]) == []
        assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, ScorePayload(points=None))]) == []
        assert backdoor.held_scores() == {}  # a blank clears
        assert (asid, student) not in await destination.read_scores(ctx, setup["section_ids"])
        assert backdoor.accepted_score_writes(asid, student) == 6

    @pytest.mark.anyio
    async def test_one_refused_student_does_not_stop_the_others(self, destination: LtiAgsDestination,
                                                                setup: dict[str, Any],
                                                                backdoor: CanvasAgsBackdoor) -> None:
        ctx = await destination.load_context(setup["section_ids"])
        created = await destination.create_assignment(ctx, payload_for(setup, "Lab 3"))
        section = setup["section_ids"][0]
        asid = created.section_assignment_ids[section]
        writes = [ScoreWrite(setup["enrolled_student"], ScorePayload(points=10.0)),
                  ScoreWrite(setup["other_student"], ScorePayload(points=11.0))]
        rejected = await destination.write_scores(ctx, section, asid, writes)
        assert [(r.student_dest_id, r.code) for r in rejected] == [
            (setup["other_student"], "student-not-in-destination-section")]
        assert "User not found in course or is not a student" in rejected[0].detail  # Canvas's 422, word for word
        assert backdoor.held_scores() == {(asid, setup["enrolled_student"]): ScorePayload(points=10.0)}
        assert backdoor.accepted_score_writes(asid, setup["enrolled_student"]) == 1
        assert backdoor.accepted_score_writes(asid, setup["other_student"]) == 0

    @pytest.mark.anyio
    async def test_refusals_come_back_as_catalogue_codes(self, destination: LtiAgsDestination, setup: dict[str, Any],
                                                         backdoor: CanvasAgsBackdoor) -> None:
        ctx = await destination.load_context(setup["section_ids"])
        payload = payload_for(setup, "N" * 256)  # over Canvas's 255; AGS has no categories to refuse
        with pytest.raises(DestinationError) as refused:
            await destination.create_assignment(ctx, payload)
        assert refused.value.code == "name-over-destination-limit" and refused.value.status == 422
        assert "is too long (maximum is 255 characters)" in refused.value.detail
        assert backdoor.assignments_named(payload.name) == 0 and backdoor.accepted_creates(payload.name) == 0


# --- beyond the contract --------------------------------------------------------------------------


def _token(district: District, registration: dict[str, Any], key: RSAKey, scopes: tuple[str, ...] = SCOPES,
           **claims: Any) -> httpx.Response:
    """A token request made by hand, with an assertion the test signs (claims overridable)."""
    url = registration["auth_token_url"]
    now = int(time.time())
    kid = claims.pop("kid", None) or key.kid
    body = {"iss": registration["client_id"], "sub": registration["client_id"], "aud": url, "iat": now,
            "exp": now + 300, "jti": f"jti-{time.monotonic_ns()}", **claims}
    assertion = jwt.encode({"alg": "RS256", "kid": kid}, body, key)
    return httpx.post(url, data={"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                                 "client_assertion": assertion, "scope": " ".join(scopes)})


def test_the_token_endpoint_checks_the_assertion_as_canvas_does(district: District, registration: dict[str, Any],
                                                                tool_key: RSAKey) -> None:
    ok = _token(district, registration, tool_key)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and set(body["scope"].split()) == set(SCOPES)
    forger = RSAKey.generate_key(2048, private=True)
    forged = _token(district, registration, forger, kid=tool_key.kid)  # another key, claiming the tool's kid
    assert forged.status_code == 400 and forged.json() == {"error": "invalid_request",
                                                          "error_description": "JWS signature invalid."}
    wrong_audience = _token(district, registration, tool_key, aud="https://elsewhere.example/token")
    assert wrong_audience.status_code == 400 and "aud" in wrong_audience.json()["error_description"]
    expired = _token(district, registration, tool_key, iat=int(time.time()) - 900, exp=int(time.time()) - 600)
    assert expired.status_code == 400 and "exp" in expired.json()["error_description"]
    replayed_jti = "used-once"
    assert _token(district, registration, tool_key, jti=replayed_jti).status_code == 200
    again = _token(district, registration, tool_key, jti=replayed_jti)
    assert again.status_code == 400 and "jti" in again.json()["error_description"]
    stranger = _token(district, registration, tool_key, sub="99999", iss="99999")
    assert stranger.status_code == 401 and stranger.json()["error"] == "invalid_client"
    no_scope = _token(district, registration, tool_key, scopes=("https://example.org/not-a-scope",))
    assert no_scope.status_code == 400 and no_scope.json()["error"] == "invalid_scope"
    token_writes = [w for w in district.canvas.writes if w.path == "/login/oauth2/token"]
    assert len(token_writes) == 2  # the good one and the first use of the jti; refusals are not accepted writes


@pytest.mark.anyio
async def test_a_forged_assertion_is_refused_and_names_the_fix(district: District, registration: dict[str, Any],
                                                               setup: dict[str, Any], tool_key: RSAKey) -> None:
    forger = RSAKey.generate_key(2048, private=True)
    destination = LtiAgsDestination(ags_client(district, registration, forger, kid=str(tool_key.kid)))
    try:
        with pytest.raises(AuthRefused) as refused:
            await destination.load_context(setup["section_ids"])
    finally:
        await destination.aclose()
    assert refused.value.code == "destination-auth" and refused.value.status == 400
    assert "JWS signature invalid." in refused.value.detail and str(tool_key.kid) in refused.value.detail
    assert not [w for w in district.canvas.writes if w.path.startswith("/api/lti/")]  # nothing reached the services


@pytest.mark.anyio
async def test_a_token_without_the_score_scope_cannot_post_scores(district: District, registration: dict[str, Any],
                                                                  setup: dict[str, Any], tool_key: RSAKey) -> None:
    scopes = tuple(s for s in SCOPES if not s.endswith("/score"))
    destination = LtiAgsDestination(ags_client(district, registration, tool_key, scopes=scopes))
    try:
        ctx = await destination.load_context(setup["section_ids"])
        created = await destination.create_assignment(ctx, payload_for(setup, "Lab 5"))
        section = setup["section_ids"][0]
        rejected = await destination.write_scores(ctx, section, created.section_assignment_ids[section],
                                                  [ScoreWrite(setup["enrolled_student"], ScorePayload(points=3.0))])
    finally:
        await destination.aclose()
    assert [(r.student_dest_id, r.code) for r in rejected] == [(setup["enrolled_student"], "destination-auth")]
    assert "Insufficient permissions" in rejected[0].detail and "scopes" in rejected[0].detail


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["reset", "drop"])
async def test_a_lost_score_answer_is_read_back_not_doubled(how: str, district: District, destination: LtiAgsDestination,
                                                            setup: dict[str, Any], backdoor: CanvasAgsBackdoor) -> None:
    """``reset``: Canvas took the score, its answer was lost; ``drop``: it never arrived. Either way, one write."""
    ctx = await destination.load_context(setup["section_ids"])
    created = await destination.create_assignment(ctx, payload_for(setup, "Lab 6"))
    section = setup["section_ids"][0]
    asid = created.section_assignment_ids[section]
    student = setup["enrolled_student"]
    district.canvas.control("faults", {"scripted": [{"path": urlsplit(asid).path + "/scores", how: True}]})
    results = "GET /api/lti/courses/{course_id}/line_items/{item_id}/results"
    before = district.canvas.control("stats")["requests"]
    assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, ScorePayload(points=15.0))]) == []
    after = district.canvas.control("stats")["requests"]
    assert district.canvas.faults.injected.get("scripted") == 1
    assert backdoor.held_scores() == {(asid, student): ScorePayload(points=15.0)}
    assert backdoor.accepted_score_writes(asid, student) == 1  # reset: taken once, not sent again; drop: sent again
    sent = after["POST /api/lti/courses/{course_id}/line_items/{item_id}/scores"] - before.get(
        "POST /api/lti/courses/{course_id}/line_items/{item_id}/scores", 0)
    assert sent == 1  # the handler saw one: the reset one (found by the read back) or the resend after the drop
    assert after[results] - before.get(results, 0) == 2  # the student's result looked up, then the batch confirmed


@pytest.mark.anyio
async def test_results_read_back_confirm_every_write(district: District, destination: LtiAgsDestination,
                                                     setup: dict[str, Any], backdoor: CanvasAgsBackdoor) -> None:
    ctx = await destination.load_context(setup["section_ids"])
    created = await destination.create_assignment(ctx, payload_for(setup, "Lab 7"))
    section = setup["section_ids"][0]
    asid = created.section_assignment_ids[section]
    students = list(ctx.sections[section].student_ids)
    writes = [ScoreWrite(s, ScorePayload(points=float(n))) for n, s in enumerate(students)]
    before = district.canvas.control("stats")["requests"]
    assert await destination.write_scores(ctx, section, asid, writes) == []
    after = district.canvas.control("stats")["requests"]
    results_path = "GET " + LINE_ITEMS_PATH.replace("{course}", "{course_id}") + "/{item_id}/results"
    assert after.get(results_path, 0) - before.get(results_path, 0) == 1  # one read back confirms the batch
    assert backdoor.held_scores() == {(asid, w.student_dest_id): ScorePayload(points=w.payload.points) for w in writes}
    # A platform that says yes and keeps nothing: the read back turns the "yes" into a rejection.
    district.canvas.control("faults", {"scripted": [{"path": urlsplit(asid).path + "/scores", "status": 200,
                                                     "body": {"resultUrl": asid + "/results/0"}, "times": 1}]})
    rejected = await destination.write_scores(ctx, section, asid, [ScoreWrite(students[0], ScorePayload(points=9.5))])
    assert [(r.student_dest_id, r.code) for r in rejected] == [(students[0], "destination-rejected")]
    assert "holds 0 points instead of 9.5 points" in rejected[0].detail


@pytest.mark.anyio
async def test_a_grade_changed_in_canvas_shows_as_drift_and_older_scores_are_refused(
        district: District, destination: LtiAgsDestination, setup: dict[str, Any], registration: dict[str, Any],
        tool_key: RSAKey) -> None:
    ctx = await destination.load_context(setup["section_ids"])
    created = await destination.create_assignment(ctx, payload_for(setup, "Lab 8"))
    section = setup["section_ids"][0]
    asid = created.section_assignment_ids[section]
    student = setup["enrolled_student"]
    sent_at = "2026-01-01T00:00:00.000000+00:00"
    assert await destination.write_scores(ctx, section, asid, [ScoreWrite(student, ScorePayload(points=12.0))]) == []
    item = district.canvas.state["lti"]["line_items"][asid.rsplit("/", 1)[1]]
    user_id = next(u for u in district.canvas.state["users"] if sub(district, int(u)) == student)
    token = _token(district, registration, tool_key).json()["access_token"]
    async with httpx.AsyncClient() as client:
        regrade = await client.put(
            f"{district.canvas.url}/api/v1/courses/{item['course_id']}/assignments/{item['assignment_id']}"
            f"/submissions/{user_id}", data={"submission[posted_grade]": "14"},
            headers={"Authorization": f"Bearer {district.credentials.canvas_token}"})
        assert regrade.status_code == 200, regrade.text
        held = await destination.read_scores(ctx, setup["section_ids"])
        assert held[(asid, student)] == ScorePayload(points=14.0)  # the teacher's grade, read as drift
        old = await client.post(asid + "/scores", headers={"Authorization": f"Bearer {token}",
                                                           "Content-Type": "application/vnd.ims.lis.v1.score+json"},
                                content=json.dumps({"userId": student, "scoreGiven": 1, "scoreMaximum": 20,
                                                    "timestamp": sent_at, "activityProgress": "Completed",
                                                    "gradingProgress": "FullyGraded"}))
    assert old.status_code == 400
    assert old.json()["errors"]["message"].startswith(f"Provided timestamp of {sent_at} before last updated timestamp of ")


@pytest.mark.anyio
async def test_containers_are_read_page_by_page_through_link_headers(district: District, destination: LtiAgsDestination,
                                                                     setup: dict[str, Any]) -> None:
    ctx = await destination.load_context(setup["section_ids"])
    container = setup["section_ids"][0]
    for n in range(12):
        await destination.create_assignment(ctx, payload_for(setup, f"Paged {n}"))
    before = district.canvas.control("stats")["requests"].get("GET /api/lti/courses/{course_id}/line_items", 0)
    rows = await destination.client.get_pages(container, LINEITEMS, {"limit": 5, "tag": "passback"})
    after = district.canvas.control("stats")["requests"]["GET /api/lti/courses/{course_id}/line_items"]
    assert sorted(r["label"] for r in rows) == sorted(f"Paged {n}" for n in range(12)) and after - before == 3
    memberships = container.replace("/line_items", "/names_and_roles")
    first, members = await destination.client.get_all(memberships, MEMBERSHIPS, {"limit": 5}, items="members")
    learners = [m["user_id"] for m in members if LEARNER in m["roles"]]
    assert sorted(learners) == sorted(ctx.sections[container].student_ids) and len(learners) == 12
    assert first["context"]["title"] == ctx.sections[container].name


@pytest.mark.anyio
async def test_the_registry_opens_and_probes_an_ags_connection(district: District, registration: dict[str, Any],
                                                               tool_key: RSAKey, setup: dict[str, Any]) -> None:
    kind = kind_of("lti_ags")
    assert kind.roles == (DESTINATION,)
    config = kind.config.parse(district.canvas.url, {
        "client_id": registration["client_id"], "token_url": registration["auth_token_url"],
        "private_key": tool_key.as_pem(private=True).decode(), "key_id": str(tool_key.kid)})
    assert set(config.credentials()) >= {"client_id", "token_url", "private_key", "key_id"}
    assert "accepted" in await kind.probe(config, HttpOptions(timeout=10.0))
    destination = open_connector(DESTINATION, config, HttpOptions(), "canvas-ags")
    try:
        ctx = await destination.load_context(setup["section_ids"])
    finally:
        await destination.aclose()
    assert setup["enrolled_student"] in ctx.sections[setup["section_ids"][0]].student_ids
    sis_ids = {u["sis_user_id"] for u in district.canvas.state["users"].values()}
    assert set(ctx.student_ids) <= sis_ids and setup["enrolled_student"] in ctx.student_ids.values()


@pytest.mark.anyio
async def test_a_renamed_assignment_keeps_its_line_item_and_takes_the_new_resource_id(
        destination: LtiAgsDestination, setup: dict[str, Any], backdoor: CanvasAgsBackdoor) -> None:
    ctx = await destination.load_context(setup["section_ids"])
    payload = payload_for(setup, "Lab 11")
    created = await destination.create_assignment(ctx, payload)
    renamed = replace(payload, name="Lab 11 (final)")
    await destination.update_assignment(ctx, created, renamed)
    item = backdoor.lti["line_items"][created.dest_id.rsplit("/", 1)[1]]
    assert item["resource_id"] == resource_id(renamed) != resource_id(payload) and item["tag"] == "passback"
    assert await destination.find_assignment(ctx, renamed) == created


# --- a platform we did not write: lti1p3platform -----------------------------------------------------


def _lti1p3platform_config(tool_key: RSAKey, client_id: str, platform_pem: str, jwks_url: str | None = None) -> Any:
    from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
    from lti1p3platform.registration import Registration

    class Platform(LTI1P3PlatformConfAbstract):
        def init_platform_config(self, **kwargs: Any) -> None:
            return None

        def get_registration_by_params(self, **kwargs: Any) -> Registration:
            registration = (Registration().set_iss("https://platform.example").set_client_id(client_id)
                            .set_platform_private_key(platform_pem)
                            .set_platform_public_key(RSAKey.import_key(platform_pem).as_pem(private=False).decode()))
            if jwks_url:
                return registration.set_tool_key_set_url(jwks_url)
            return registration.set_tool_key_set({"keys": [public_jwk(tool_key)]})

    platform = Platform()
    platform.get_registration()
    return platform


def test_lti1p3platform_accepts_our_client_assertion_and_refuses_a_forged_one(tool_key: RSAKey) -> None:
    """Its token endpoint, in process: it verifies the assertion's signature by the tool's key set and kid."""
    import jwt as pyjwt
    from lti1p3platform.exceptions import LtiException

    platform_pem = RSAKey.generate_key(2048, private=True).as_pem(private=True).decode()
    platform = _lti1p3platform_config(tool_key, "10000000000042", platform_pem)
    token_url = "https://platform.example/login/oauth2/token"
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "scope": " ".join(SCOPES),
            "client_assertion": client_assertion("10000000000042", token_url, tool_key, str(tool_key.kid))}
    answer = platform.get_access_token(form)
    assert answer["token_type"] == "bearer" and set(answer["scope"].split()) == set(SCOPES)
    decoded = platform.tool_validate_and_decode(form["client_assertion"])
    assert decoded["iss"] == decoded["sub"] == "10000000000042" and decoded["aud"] == token_url
    assert decoded["exp"] - decoded["iat"] == 300 and decoded["jti"]
    forger = RSAKey.generate_key(2048, private=True)
    forged = dict(form, client_assertion=client_assertion("10000000000042", token_url, forger, str(tool_key.kid)))
    with pytest.raises(pyjwt.InvalidSignatureError):
        platform.get_access_token(forged)
    unknown_kid = dict(form, client_assertion=client_assertion("10000000000042", token_url, tool_key, "not-our-kid"))
    with pytest.raises(LtiException, match="Unable to find public key"):
        platform.get_access_token(unknown_kid)


class Lti1p3Store:
    """Storage for an AGS and NRPS service built on lti1p3platform's abstract services (the part it leaves to us)."""

    def __init__(self, members: list[dict[str, Any]]) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.scores: dict[tuple[str, str], dict[str, Any]] = {}
        self.members = members


def lti1p3platform_app(tool_key: RSAKey, client_id: str, store: Lti1p3Store) -> Starlette:
    """A platform whose token endpoint, bearer checks, paging links and status codes are lti1p3platform's."""
    from lti1p3platform.membership import Context
    from lti1p3platform.request import Request as LtiRequest
    from lti1p3platform.response import generate_next_link
    from lti1p3platform.score import UpdateScoreStatus
    from lti1p3platform.service_connector import AssignmentsGradesService, NamesRoleProvisioningService

    platform_pem = RSAKey.generate_key(2048, private=True).as_pem(private=True).decode()
    platform = _lti1p3platform_config(tool_key, client_id, platform_pem)

    class StarletteRequest(LtiRequest):
        def build_metadata(self, request: Any) -> Any:
            return request

    def page_of(rows: list[Any], page: Any = 1, limit: Any = None) -> dict[str, Any]:
        page, size = int(page or 1), int(limit or 10)
        return {"content": rows[(page - 1) * size: page * size], "has_next": page * size < len(rows)}

    class Service(AssignmentsGradesService):
        def find_lineitems(self, page: Any = 1, limit: Any = None, line_item_id: Any = None,
                           resource_link_id: Any = None, resource_id: Any = None, tag: Any = None) -> Any:
            rows = [i for i in store.items.values() if resource_id in (None, i.get("resourceId"))
                    and tag in (None, i.get("tag"))]
            return page_of(rows, page, limit)

        def find_lineitem(self, line_item_id: str) -> Any:
            return store.items[line_item_id]

        def create_lineitem(self, creation_data: Any) -> Any:
            item = dict(creation_data, id=f"{self.ags.lineitems_url}/{len(store.items) + 1}")
            store.items[item["id"]] = item
            return item

        def update_lineitem(self, update_data: Any) -> Any:
            store.items[update_data["id"]].update(update_data)
            return store.items[update_data["id"]]

        def delete_lineitem(self, line_item_id: str) -> None:
            store.items.pop(line_item_id, None)

        def update_score(self, line_item_id: str, score: Any) -> Any:
            created = (line_item_id, score["userId"]) not in store.scores
            store.scores[(line_item_id, score["userId"])] = score
            return UpdateScoreStatus.CREATED if created else UpdateScoreStatus.SUCCESS

        def get_results(self, line_item_id: str, page: Any = 1, limit: Any = None, user_id: Any = None) -> Any:
            rows = [{"id": f"{item}/results/{user}", "scoreOf": item, "userId": user,
                     "resultScore": s.get("scoreGiven"), "resultMaximum": s.get("scoreMaximum")}
                    for (item, user), s in store.scores.items() if item == line_item_id and user_id in (None, user)]
            return page_of(rows, page, limit)

    class Roster(NamesRoleProvisioningService):
        def get_member_data_page(self, page: Any = 1, limit: Any = None, role: Any = None, since: Any = None) -> Any:
            return page_of([m for m in store.members if role is None or role in m["roles"]], page, limit)

        def get_context_by_id(self) -> Any:
            return Context(id="course-1", label="BIO-1", title="Biology (lti1p3platform)")

    async def wrap(request: Request, handle: Any) -> Response:
        body = await request.body()
        query = {k: (int(v) if v.isdigit() else v) for k, v in request.query_params.items()}
        lti_request = StarletteRequest({"method": request.method, "form_data": {}, "get_data": query,
                                        "headers": request.headers, "content_type": request.headers.get("content-type"),
                                        "path": request.url.path, "json": json.loads(body) if body else None})
        answer = handle(lti_request)  # lti1p3platform's Response, turned into HTTP as its Django adapter does
        if not 200 <= answer.code < 300:
            return JSONResponse({"error": answer.message}, status_code=answer.code)
        result = answer.result
        data = result["content"] if isinstance(result, dict) and "content" in result else result
        headers = {"Link": generate_next_link(result["next"])} if isinstance(result, dict) and result.get("next") else {}
        if data is None:
            return Response(status_code=answer.code, headers=headers)
        return JSONResponse(data, status_code=answer.code, media_type=answer.media_type, headers=headers)

    def container(request: Request) -> str:
        return f"{request.base_url}api/lti/courses/1/line_items"

    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        return JSONResponse(platform.get_access_token(form))

    async def line_items(request: Request) -> Response:
        def handle(lti_request: Any) -> Any:
            service = Service(lti_request, platform, container(request))
            return service.handle_get_lineitems() if request.method == "GET" else service.handle_create_lineitem()

        return await wrap(request, handle)

    async def line_item(request: Request) -> Response:
        item = f"{container(request)}/{request.path_params['item']}"

        def handle(lti_request: Any) -> Any:
            service = Service(lti_request, platform, container(request), item)
            return {"GET": service.handle_get_lineitem, "PUT": service.handle_update_lineitem,
                    "DELETE": service.handle_delete_lineitem}[request.method](item)

        return await wrap(request, handle)

    async def scores(request: Request) -> Response:
        item = f"{container(request)}/{request.path_params['item']}"
        return await wrap(request, lambda r: Service(r, platform, container(request), item).handle_update_score(item))

    async def results(request: Request) -> Response:
        item = f"{container(request)}/{request.path_params['item']}"
        return await wrap(request, lambda r: Service(r, platform, container(request), item).handle_get_results(item))

    async def members(request: Request) -> Response:
        url = f"{request.base_url}api/lti/courses/1/names_and_roles"
        return await wrap(request, lambda r: Roster(r, platform, url).handle_get_members())

    one = "/api/lti/courses/1/line_items/{item}"
    return Starlette(routes=[
        Route("/login/oauth2/token", token, methods=["POST"]),
        Route("/api/lti/courses/1/line_items", line_items, methods=["GET", "POST"]),
        Route(one, line_item, methods=["GET", "PUT", "DELETE"]),
        Route(one + "/scores", scores, methods=["POST"]),
        Route(one + "/results", results, methods=["GET"]),
        Route("/api/lti/courses/1/names_and_roles", members, methods=["GET"]),
    ])


@pytest.mark.anyio
async def test_the_destination_against_an_lti1p3platform_service(tool_key: RSAKey) -> None:
    """Token, roster, line item, scores and results through lti1p3platform's own service handlers."""
    learner = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
    store = Lti1p3Store([{"user_id": "u-1", "roles": [learner], "lis_person_sourcedid": "200001", "status": "Active"},
                         {"user_id": "u-2", "roles": [learner], "lis_person_sourcedid": "200002", "status": "Active"},
                         {"user_id": "t-1", "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"]}])
    with ServedApp(lti1p3platform_app(tool_key, "10000000000042", store)) as served:
        client = AgsClient(served.url, "10000000000042", f"{served.url}/login/oauth2/token",
                           tool_key.as_pem(private=True).decode(), str(tool_key.kid), policy=FAST)
        destination = LtiAgsDestination(client)
        try:
            container = f"{served.url}/api/lti/courses/1/line_items"
            ctx = await destination.load_context([container])
            assert ctx.sections[container].student_ids == ("u-1", "u-2")
            assert ctx.student_ids == {"200001": "u-1", "200002": "u-2"}
            setup = {"section_ids": [container], "categories": {}}
            payload = payload_for(setup, "Lab 1")
            created = await destination.create_assignment(ctx, payload)
            assert store.items[created.dest_id]["resourceId"] == resource_id(payload)
            assert await destination.find_assignment(ctx, payload) == created
            writes = [ScoreWrite("u-1", ScorePayload(points=18.0)), ScoreWrite("u-2", ScorePayload(points=21.0))]
            assert await destination.write_scores(ctx, container, created.dest_id, writes) == []
            assert await destination.read_scores(ctx, [container]) == {
                (created.dest_id, "u-1"): ScorePayload(points=18.0), (created.dest_id, "u-2"): ScorePayload(points=21.0)}
            sent = store.scores[(created.dest_id, "u-1")]
            assert (sent["activityProgress"], sent["gradingProgress"], sent["scoreMaximum"]) == (
                "Completed", "FullyGraded", 20.0)
        finally:
            await destination.aclose()
