"""A class's gradebook read from a OneRoster server (the OneRoster emulator, 1.1 and 1.2, over real HTTP) and
synced into PowerTeacher Pro (the PowerSchool emulator) through the run service with saved connections.

Every assignment and score is checked on the PowerSchool emulator's raw state against what the OneRoster
emulator's raw lineItems and results say under seed 000's requirements and transfer tables, computed here
without passback's code (late passes as late, missing does not pass, exempt passes as Exempt); a second sync
sends nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from passback.emulators import oneroster as oneroster_emulator
from passback.emulators.faults import FaultConfig
from passback.pipeline.plan import Scope
from passback.pipeline.run import RunResult
from passback.sandbox.oneroster_bundle import build_bundle
from passback.services import connections as connection_service
from passback.services.runs import sync_courses
from passback.settings import Settings
from passback.store.db import Store
from passback.testing.writes import changes
from tests.conftest import ServedApp
from tests.contract.test_oneroster_rest_source import CLIENT_ID, CLIENT_SECRET, CSV_VERSION, rest_state
from tests.e2e.expected import held_destination_scores
from tests.e2e.test_oneroster_csv_to_powerteacher import ROUTE, TITLE_LIMIT, Sis, held_assignments, sis, total

__all__ = ["sis"]  # the PowerSchool emulator fixture, shared with the CSV bundle's test


def expected_holdings(rest: dict[str, Any], powerschool: dict[str, Any], class_id: str, version: str,
                      ) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str, int], dict[str, Any]]]:
    """(assignments by (title, section), scores by (title, section, student dcid)) PowerTeacher Pro must hold
    after the class is synced, from the OneRoster server's raw objects and the seed's rules by hand."""
    def live(collection: str) -> list[dict[str, Any]]:
        return [o for o in rest[collection].values() if o.get("status", "active") == "active"]

    klass = rest["classes"][class_id]
    term = rest["academicSessions"][klass["terms"][0]["sourcedId"]]
    users = {u["sourcedId"]: u for u in live("users")}
    enrolled = {e["user"]["sourcedId"] for e in live("enrollments")
                if e["class"]["sourcedId"] == class_id and e["role"] == "student" and e["user"]["sourcedId"] in users}
    categories = {c["sourcedId"] for c in live("categories")}
    staff = powerschool["sections"][class_id]["staff_id"]
    dcid_by_number = {str(s["local_id"]): s["id"] for s in powerschool["students"].values()}
    assignments: dict[tuple[str, str], dict[str, Any]] = {}
    scores: dict[tuple[str, str, int], dict[str, Any]] = {}
    for item in live("lineItems"):
        if item["class"]["sourcedId"] != class_id:
            continue
        due, category_id = item["dueDate"][:10], item["category"]["sourcedId"]
        category = powerschool["categories"].get(category_id)
        if len(item["title"]) > TITLE_LIMIT or item["resultValueMax"] is None or category_id not in categories \
                or category is None or category["usersdcid"] != staff or not category["isactive"] \
                or not date.fromisoformat(term["startDate"]) <= date.fromisoformat(due) <= \
                date.fromisoformat(term["endDate"]):
            continue
        key = (item["title"], class_id)
        assignments[key] = {"duedate": due, "points": float(item["resultValueMax"]), "category": int(category_id)}
        for result in live("results"):
            student = result["student"]["sourcedId"]
            if result["lineItem"]["sourcedId"] != item["sourcedId"] or student not in enrolled:
                continue
            dcid = dcid_by_number[users[student]["identifier"] or student]
            status = result["scoreStatus"]
            if status == "exempt":
                scores[(*key, dcid)] = {"scorepoints": None, "islate": False, "isexempt": True}
            elif version == "v1p2" and result.get("missing") == "true":
                continue  # Missing: does not pass, displays as blank
            elif status in ("fully graded", "partially graded", "submitted") and result["score"] is not None:
                scores[(*key, dcid)] = {"scorepoints": float(result["score"]),
                                        "islate": version == "v1p2" and result.get("late") == "true",
                                        "isexempt": False}
            # not submitted (missing in 1.1) and submitted-ungraded: nothing to send
    return assignments, scores


@pytest.fixture(params=["v1p1", "v1p2"])
def oneroster(request: pytest.FixtureRequest, sis: Sis) -> Iterator[tuple[ServedApp, str]]:
    """The SIS's OneRoster server, holding the district's gradebook (the sandbox bundle's rows as REST objects)."""
    version = str(request.param)
    state = rest_state(build_bundle(sis.canvas, sis.state, CSV_VERSION[version]))
    with ServedApp(oneroster_emulator.create_app(state, faults=FaultConfig())) as served:
        yield served, version


def sync_class(store: Store, settings: Settings, class_id: str) -> RunResult:
    return asyncio.run(sync_courses(store, settings, ROUTE, [Scope(course_id=class_id)]))[0]


def test_a_class_lands_in_powerteacher_pro_exactly_and_a_second_sync_sends_nothing(
        env: tuple[Store, Settings], sis: Sis, oneroster: tuple[ServedApp, str]) -> None:
    store, settings = env
    served, version = oneroster
    connection_service.save(store, settings, name="lms", kind="oneroster", url=served.url,
                            credentials={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "version": version})
    connection_service.save(store, settings, name="sis", kind="powerschool", url=sis.powerschool.url,
                            credentials={"client_id": sis.credentials.powerschool_client_id,
                                         "client_secret": sis.credentials.powerschool_client_secret})
    candidates = {c: expected_holdings(served.state, sis.state, c, version)
                  for c, k in sorted(served.state["classes"].items())
                  if k["course"]["sourcedId"] != "PS-COURSE-1"}  # a course whose lineItems the seed lets through
    class_id = next(c for c, (_, scores) in candidates.items() if any(s["isexempt"] for s in scores.values()))
    expected_assignments, expected_scores = candidates[class_id]
    assert len(expected_assignments) >= 5 and len(expected_scores) >= 20
    assert any(s["islate"] for s in expected_scores.values()) is (version == "v1p2")  # 1.1 has no late flag

    first = sync_class(store, settings, class_id)
    assert first.status == "succeeded", first.problems
    assert held_assignments(sis.state) == expected_assignments
    assert held_destination_scores(sis.state) == expected_scores
    assert not [w for w in served.writes if w.method != "POST"]  # the OneRoster gradebook is only read

    before = len(changes(sis.powerschool.writes))
    second = sync_class(store, settings, class_id)
    assert second.status == "succeeded"
    assert total([second], "created") == total([second], "updated") == total([second], "deleted") == 0
    assert len(changes(sis.powerschool.writes)) == before  # nothing sent
