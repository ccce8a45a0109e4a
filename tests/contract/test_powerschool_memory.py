"""What a process keeps between runs (tokens, a school's students) against the PowerSchool emulator.

Each "run" is a new client, as each run of a worker opens its own, sharing one
:class:`ProcessMemory`. The emulator's request counts are the judge of what was read; the
mapping of student numbers to PowerSchool ids is checked against the emulator's own state.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from passback.connectors.http import RetryPolicy
from passback.connectors.memory import ProcessMemory
from passback.connectors.powerschool.client import PowerSchoolClient
from passback.connectors.powerschool.destination import PowerTeacherProDestination
from passback.model.values import DestinationContext
from tests.conftest import District
from tests.contract.test_powerschool_destination import first_course_setup

SCHOOL_LIST = "GET /ws/v1/school/{school:int}/student"
SCHOOL_COUNT = "GET /ws/v1/school/{school:int}/student/count"
TOKEN = "POST /oauth/access_token"


async def one_run(district: District, memory: ProcessMemory, section_ids: list[str]) -> DestinationContext:
    client = PowerSchoolClient(district.powerschool.url, district.credentials.powerschool_client_id,
                               district.credentials.powerschool_client_secret, memory=memory,
                               policy=RetryPolicy(initial_wait=0.01, max_wait=0.05))
    try:
        return await PowerTeacherProDestination(client).load_context(section_ids)
    finally:
        await client.aclose()


def requests(district: District) -> Counter[str]:
    return Counter(district.powerschool.control("stats")["requests"])


def expected_ids(state: dict[str, Any]) -> dict[str, str]:
    """Student number -> PowerSchool id, from the emulator's own records."""
    return {str(s["local_id"]): str(s["id"]) for s in state["students"].values() if s["school_id"] == 1}


def enroll_new_student(state: dict[str, Any], section_ids: list[str], *, replacing: bool) -> str:
    """A student added to the school and the first section, as the SIS would; ``replacing`` withdraws a
    student of another course from the school at the same time, so the school's count is unchanged."""
    students = state["students"]
    if replacing:
        ours = {str(s) for section_id in section_ids for s in state["sections"][section_id]["students"]}
        gone = next(k for k in students if k not in ours)
        del students[gone]
        for section in state["sections"].values():
            section["students"] = [s for s in section["students"] if str(s) != gone]
    new_id = max(int(k) for k in students) + 1000
    students[str(new_id)] = {"id": new_id, "local_id": 900000 + new_id, "student_username": f"s{new_id}",
                             "name": {"first_name": "New", "last_name": "Student"}, "school_id": 1}
    state["sections"][section_ids[0]]["students"].append(new_id)
    return str(new_id)


@pytest.mark.anyio
async def test_a_later_run_keeps_the_token_and_the_schools_students(district: District) -> None:
    setup, memory = first_course_setup(district.powerschool.state), ProcessMemory()
    before = requests(district)
    first = await one_run(district, memory, setup["section_ids"])
    after_first = requests(district)
    second = await one_run(district, memory, setup["section_ids"])
    after_second = requests(district)

    first_reads, second_reads = after_first - before, after_second - after_first
    assert first_reads[TOKEN] == 1 and first_reads[SCHOOL_LIST] >= 1
    assert second_reads[TOKEN] == 0  # the token of the first run, still valid
    assert second_reads[SCHOOL_LIST] == 0 and second_reads[SCHOOL_COUNT] == 1  # the count said it still holds
    assert first.student_ids == second.student_ids == expected_ids(district.powerschool.state)


@pytest.mark.anyio
@pytest.mark.parametrize("replacing", [False, True], ids=["school-grew", "same-count"])
async def test_a_student_enrolled_since_is_read_again(district: District, replacing: bool) -> None:
    state = district.powerschool.state
    setup, memory = first_course_setup(state), ProcessMemory()
    await one_run(district, memory, setup["section_ids"])
    new = enroll_new_student(state, setup["section_ids"], replacing=replacing)

    before = requests(district)
    context = await one_run(district, memory, setup["section_ids"])
    reads = requests(district) - before

    assert reads[SCHOOL_LIST] >= 1  # read again: by the count, or by the roster naming a student the list lacks
    assert context.student_ids == expected_ids(state)
    assert context.student_ids[str(900000 + int(new))] == new
    assert new in context.sections[setup["section_ids"][0]].student_ids


@pytest.mark.anyio
async def test_a_kept_token_the_server_forgot_is_fetched_again(district: District) -> None:
    setup, memory = first_course_setup(district.powerschool.state), ProcessMemory()
    await one_run(district, memory, setup["section_ids"])
    district.powerschool.app.state.emulator.tokens.clear()  # the server forgot every token (a restart)

    before = requests(district)
    context = await one_run(district, memory, setup["section_ids"])
    third = await one_run(district, memory, setup["section_ids"])
    reads = requests(district) - before

    assert reads[TOKEN] == 1  # one 401, one new token, kept for the third run
    assert context.student_ids == third.student_ids == expected_ids(district.powerschool.state)


@pytest.mark.anyio
async def test_a_changed_secret_is_another_token(district: District) -> None:
    setup, memory = first_course_setup(district.powerschool.state), ProcessMemory()
    await one_run(district, memory, setup["section_ids"])
    client = PowerSchoolClient(district.powerschool.url, district.credentials.powerschool_client_id, "not-the-secret",
                               memory=memory, policy=RetryPolicy(initial_wait=0.01, max_wait=0.05))
    try:
        with pytest.raises(Exception) as refused:
            await PowerTeacherProDestination(client).load_context(setup["section_ids"])
    finally:
        await client.aclose()
    assert "client id and secret" in str(refused.value)  # the kept token was not lent to other credentials
