"""The PowerSchool emulator's assignment lookup answers from an index of scores; what it answers must
still be every score of the sections asked for, however the scores changed since the index was made."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import District
from tests.contract.test_powerschool_destination import first_course_setup


def token(district: District) -> str:
    return httpx.post(f"{district.powerschool.url}/oauth/access_token", data={"grant_type": "client_credentials"},
                      auth=(district.credentials.powerschool_client_id,
                            district.credentials.powerschool_client_secret)).json()["access_token"]


def lookup(district: District, section_ids: list[str]) -> dict[tuple[int, int], Any]:
    rows = httpx.post(f"{district.powerschool.url}/ws/xte/assignment/lookup",
                      json={"section_ids": [int(s) for s in section_ids]},
                      headers={"Authorization": f"Bearer {token(district)}"}).json()
    return {(score["assignmentsectionid"], score["studentsdcid"]): score["scorepoints"]
            for row in rows for section in row["_assignmentsections"] for score in section["_assignmentscores"]}


def scan(state: dict[str, Any], section_ids: list[str]) -> dict[tuple[int, int], Any]:
    """The same answer read the slow way: every score of the state, kept when its section was asked for."""
    asids = {s["assignmentsectionid"] for a in state["assignments"].values() for s in a["_assignmentsections"]
             if str(s["sectionsdcid"]) in section_ids}
    return {(s["assignmentsectionid"], s["studentsdcid"]): s["scorepoints"] for s in state["scores"].values()
            if s["assignmentsectionid"] in asids}


def test_the_lookup_sees_every_change_to_the_scores(district: District) -> None:
    state = district.powerschool.state
    sections = first_course_setup(state)["section_ids"]
    section = state["sections"][sections[0]]
    category = next(c["teachercategoryid"] for c in state["categories"].values()
                    if c["usersdcid"] == section["staff_id"] and c["isactive"])
    created = httpx.post(
        f"{district.powerschool.url}/ws/xte/section/assignment/", params={"users_dcid": section["staff_id"]},
        headers={"Authorization": f"Bearer {token(district)}"},
        json={"_assignmentsections": [{"sectionsdcid": int(sections[0]), "name": "Lab 1", "duedate": "2026-09-15",
                                       "scoretype": "POINTS", "scoreentrypoints": 10, "totalpointvalue": 10,
                                       "weight": 1, "extracreditpoints": 0, "iscountedinfinalgrade": True,
                                       "_assignmentcategoryassociations": [{"teachercategoryid": category}]}]})
    assert created.status_code == 201, created.text
    [assignment] = state["assignments"].values()
    asid = assignment["_assignmentsections"][0]["assignmentsectionid"]
    students = section["students"]
    assert lookup(district, sections) == {}  # the index is made now, with no score in it

    def put(student: int, points: float) -> None:  # as an outside hand would: straight into the state
        state["scores"][f"{asid}:{student}"] = {"assignmentsectionid": asid, "studentsdcid": student,
                                                "scorepoints": points, "islate": False, "isexempt": False}

    put(students[0], 4.0)
    assert lookup(district, sections) == scan(state, sections) == {(asid, students[0]): 4.0}
    put(students[0], 5.0)  # changed in place: the index holds keys, values are read as they are
    put(students[1], 6.0)  # one more score: the count changed
    assert lookup(district, sections) == scan(state, sections) == {(asid, students[0]): 5.0, (asid, students[1]): 6.0}
    del state["scores"][f"{asid}:{students[0]}"]
    assert lookup(district, sections) == scan(state, sections) == {(asid, students[1]): 6.0}
