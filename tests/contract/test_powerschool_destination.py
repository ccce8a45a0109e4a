"""PowerTeacher Pro destination (D1) against the PowerSchool emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from passback.errors import DestinationError, DestinationUnavailable
from passback.connectors.http import RetryPolicy
from passback.connectors.powerschool.client import PowerSchoolClient
from passback.connectors.powerschool.destination import PowerTeacherProDestination
from passback.model.values import ScorePayload
from passback.testing.gradebook import DestinationContract, HeldAssignment, payload_for
from passback.testing.writes import assignment_creates, changes, score_writes
from tests.conftest import District, ServedApp


def first_course_setup(state: dict[str, Any]) -> dict[str, Any]:
    teacher = min(int(s["staff_id"]) for s in state["sections"].values())
    sections = sorted(k for k, s in state["sections"].items() if s["staff_id"] == teacher)
    categories = [c for c in state["categories"].values() if c["usersdcid"] == teacher]
    active = next(c for c in categories if c["isactive"])
    inactive = next(c for c in categories if not c["isactive"])
    roster = state["sections"][sections[0]]["students"]
    other = next(s for s in state["students"] if int(s) not in roster)
    return {
        "section_ids": sections,
        "categories": {s: str(active["teachercategoryid"]) for s in sections},
        "inactive_categories": {s: str(inactive["teachercategoryid"]) for s in sections},
        "enrolled_student": str(roster[0]),
        "other_student": other,
    }


@pytest.fixture
async def destination(district: District) -> AsyncIterator[PowerTeacherProDestination]:
    client = PowerSchoolClient(district.powerschool.url, district.credentials.powerschool_client_id,
                               district.credentials.powerschool_client_secret,
                               policy=RetryPolicy(initial_wait=0.01, max_wait=0.05))
    yield PowerTeacherProDestination(client)
    await client.aclose()


@pytest.fixture
def setup(district: District) -> dict[str, Any]:
    return first_course_setup(district.powerschool.state)


class PowerSchoolBackdoor:
    def __init__(self, served: ServedApp) -> None:
        self.served = served

    def lose_answers(self, method: str) -> None:
        self.served.control("faults", {"fault_rate": 1.0, "fault_kinds": ["reset"], "only_methods": [method]})

    def answer_again(self) -> None:
        self.served.control("faults", {"fault_rate": 0})

    def delete_assignment(self, dest_id: str) -> None:
        self.served.app.state.emulator.delete_by_hand(dest_id)

    def assignments_named(self, name: str) -> int:
        return sum(1 for a in self.served.state["assignments"].values()
                   if a["_assignmentsections"][0]["name"] == name)

    def held_assignment(self, dest_id: str) -> HeldAssignment | None:
        raw = self.served.state["assignments"].get(dest_id)
        if raw is None:
            return None
        sections = raw["_assignmentsections"]
        assert len({(s["name"], s["duedate"], s["scoreentrypoints"]) for s in sections}) == 1  # one assignment
        return HeldAssignment(
            name=sections[0]["name"], due_date=sections[0]["duedate"], points_possible=sections[0]["scoreentrypoints"],
            section_assignment_ids={str(s["sectionsdcid"]): str(s["assignmentsectionid"]) for s in sections},
            category_ids={str(s["sectionsdcid"]): str(c["teachercategoryid"])
                          for s in sections for c in s["_assignmentcategoryassociations"] if c["isprimary"]},
        )

    def held_scores(self) -> dict[tuple[str, str], ScorePayload]:
        return {(str(s["assignmentsectionid"]), str(s["studentsdcid"])):
                ScorePayload(points=s["scorepoints"], late=s["islate"], exempt=s["isexempt"])
                for s in self.served.state["scores"].values()}

    def accepted_creates(self, name: str) -> int:
        return sum(n for (held, _), n in assignment_creates(self.served.writes).items() if held == name)

    def accepted_score_writes(self, section_assignment_id: str, student_id: str) -> int:
        return score_writes(self.served.writes)[(section_assignment_id, student_id)]


@pytest.fixture
def backdoor(district: District) -> PowerSchoolBackdoor:
    return PowerSchoolBackdoor(district.powerschool)


class TestPowerTeacherProContract(DestinationContract):
    pass


@pytest.mark.anyio
async def test_token_is_fetched_once_and_refreshed_after_401(district: District,
                                                            destination: PowerTeacherProDestination,
                                                            setup: dict[str, Any]) -> None:
    await destination.load_context(setup["section_ids"])
    assert destination.client.auth.fetched == 1
    district.powerschool.app.state.emulator.tokens.clear()  # the server forgot every token
    await destination.load_context(setup["section_ids"])
    assert destination.client.auth.fetched == 2


@pytest.mark.anyio
async def test_bad_credentials_name_the_fix(district: District, setup: dict[str, Any]) -> None:
    client = PowerSchoolClient(district.powerschool.url, "nobody", "wrong")
    try:
        with pytest.raises(DestinationError) as refused:
            await PowerTeacherProDestination(client).load_context(setup["section_ids"])
    finally:
        await client.aclose()
    assert refused.value.code == "destination-auth"
    assert "client id and secret" in refused.value.detail


@pytest.mark.anyio
async def test_a_create_whose_answer_is_lost_is_found_not_repeated(district: District,
                                                                  destination: PowerTeacherProDestination,
                                                                  setup: dict[str, Any]) -> None:
    ctx = await destination.load_context(setup["section_ids"])
    district.powerschool.control("faults", {"fault_rate": 1.0, "fault_kinds": ["reset"], "only_methods": ["POST"]})
    payload = payload_for(setup, "Lab 9")
    with pytest.raises(DestinationUnavailable):
        await destination.create_assignment(ctx, payload)
    district.powerschool.control("faults", {"fault_rate": 0})
    found = await destination.find_assignment(ctx, payload)
    assert found is not None  # the emulator did create it: the answer alone was lost
    names = [s["name"] for a in district.powerschool.state["assignments"].values() for s in a["_assignmentsections"]]
    assert names.count("Lab 9") == len(setup["section_ids"])
    assert assignment_creates(district.powerschool.writes) == {("Lab 9", tuple(sorted(setup["section_ids"]))): 1}
    lost = district.powerschool.faults.lost_writes()
    assert [(f.method, f.path) for f in lost] == [("POST", "/ws/xte/section/assignment/")]  # that one create
    assert [w.method for w in changes(district.powerschool.writes)] == ["POST"]


def test_the_oauth_endpoint_answers_like_powerschool(district: District) -> None:
    ok = httpx.post(f"{district.powerschool.url}/oauth/access_token", data={"grant_type": "client_credentials"},
                    auth=(district.credentials.powerschool_client_id, district.credentials.powerschool_client_secret))
    assert ok.status_code == 200
    body = ok.json()
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], str)
    bad = httpx.post(f"{district.powerschool.url}/oauth/access_token", data={"grant_type": "client_credentials"},
                     auth=("x", "y"))
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    no_token = httpx.get(f"{district.powerschool.url}/ws/xte/teacher_category", params={"users_dcid": 1})
    assert no_token.status_code == 401 and "invalid_token" in no_token.headers["www-authenticate"]
