"""Each recovery path of a gradebook sync, reached on purpose, over real HTTP.

Random faults reach whichever recovery path the dice pick; here each path has its own
test, with the fault scripted onto one request (the emulators' ``scripted`` answers), so
every run of a test meets the same fault at the same place. A sync goes through
:func:`passback.services.runs.sync_courses` from the Canvas emulator to the PowerSchool
emulator, and every outcome is checked on PowerSchool's raw state and on the log of the
writes it accepted, against values worked out from Canvas's raw data by seed 000's rules
(``tests.e2e.expected``), never by passback's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import email.utils
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import pytest

from passback.emulators import canvas as canvas_emulator
from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.faults import FaultConfig
from passback.pipeline.plan import Scope
from passback.pipeline.run import RunResult
from passback.sandbox.district import DistrictShape, generate
from passback.services.runs import sync_courses
from passback.settings import Settings
from passback.store.db import Store
from passback.store.history import get_run_items
from passback.testing.writes import (
    assignment_changes,
    assignment_creates,
    assignment_sections,
    changes,
    score_writes,
)
from tests.conftest import SMALL, District, ServedApp
from tests.e2e.expected import expected_destination_scores, held_destination_scores
from tests.e2e.test_sync_district import ROUTE, connect

ASSIGNMENTS = "/ws/xte/section/assignment/"
SCORES = "/ws/xte/score"
CATEGORY_REFUSAL = {"message": "Validation Failed", "errors": [{
    "resource": "AssignmentCategoryAssoc", "field": "teachercategoryid",
    "code": "TeacherCategoryID is not active or does not belong to lead teacher for Section"}]}


@dataclass
class Trial:
    """One course of the sandbox district, synced by the run service."""

    store: Store
    settings: Settings
    district: District
    course_id: str

    @property
    def canvas(self) -> dict[str, Any]:
        return self.district.canvas.state

    @property
    def powerschool(self) -> ServedApp:
        return self.district.powerschool

    def sync(self, assignment_id: str | None = None) -> RunResult:
        [result] = asyncio.run(sync_courses(self.store, self.settings, ROUTE,
                                            [Scope(course_id=self.course_id, assignment_id=assignment_id)]))
        return result

    def sections(self) -> set[str]:
        return {s["sis_section_id"] for s in self.canvas["sections"].values() if str(s["course_id"]) == self.course_id}

    def expected(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        """What PowerTeacher Pro must hold for this course, from Canvas's raw data by hand.

        Dates are read in the course's time zone; a course without a valid one has its
        dates read as Canvas gives them, in UTC."""
        canvas = self.canvas
        zone = canvas["courses"][self.course_id].get("time_zone")
        try:
            ZoneInfo(zone)
        except (TypeError, ValueError, ZoneInfoNotFoundError):
            canvas = copy.deepcopy(canvas)
            canvas["courses"][self.course_id]["time_zone"] = "UTC"
        return {k: v for k, v in expected_destination_scores(canvas, self.powerschool.state).items()
                if k[1] in self.sections()}

    def held(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        return {k: v for k, v in held_destination_scores(self.powerschool.state).items() if k[1] in self.sections()}

    def held_names(self) -> set[str]:
        return {name for _, name, section in assignment_sections(self.powerschool.state).values()
                if section in self.sections()}

    def valid_names(self) -> list[str]:
        """Names of this course's assignments that pass every rule and have scores to send."""
        return sorted({name for name, _, _ in self.expected()})

    def canvas_assignment(self, name: str) -> dict[str, Any]:
        return next(a for a in self.canvas["assignments"].values()
                    if str(a["course_id"]) == self.course_id and a["name"] == name)

    def dest_assignment(self, name: str) -> str:
        return next(aid for aid, held, section in assignment_sections(self.powerschool.state).values()
                    if held == name and section in self.sections())

    def create_key(self, name: str) -> tuple[str, tuple[str, ...]]:
        return name, tuple(sorted(self.sections()))

    def script(self, *answers: dict[str, Any]) -> None:
        self.powerschool.control("faults", {"scripted": list(answers)})

    def scripted_answers(self) -> list[Any]:
        return self.powerschool.faults.scripted

    def items(self, result: RunResult, *outcomes: str) -> list[dict[str, Any]]:
        assert result.run_id is not None
        return get_run_items(self.store, result.run_id, outcomes or None)

    def canvas_api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = httpx.request(method, f"{self.district.canvas.url}/api/v1{path}",
                                 headers={"Authorization": f"Bearer {self.district.credentials.canvas_token}"},
                                 **kwargs)
        response.raise_for_status()
        return response

    def assert_synced_once(self, names: set[str] | None = None, deleted: frozenset[str] = frozenset()) -> None:
        """PowerTeacher Pro holds what Canvas says (of the assignments ``names``, when a run
        was scoped to them), and took each assignment and score in once (an assignment in
        ``deleted`` was made once, and deleted since)."""
        expected = {k: v for k, v in self.expected().items() if names is None or k[0] in names}
        assert self.held() == expected
        creates = assignment_creates(self.powerschool.writes)
        assert {key for key in creates if key[1] == tuple(sorted(self.sections()))} == {
            self.create_key(name) for name in self.held_names() | deleted}
        assert all(count == 1 for count in creates.values()), creates
        # and no create was sent again to be refused as a duplicate (refusals are not in the log)
        assert self.powerschool.control("stats")["requests"].get(f"POST {ASSIGNMENTS}", 0) == sum(creates.values())
        held_keys = {(str(s["assignmentsectionid"]), str(s["studentsdcid"])) for s in self.powerschool.state["scores"].values()}
        scores = score_writes(self.powerschool.writes)
        assert set(scores.values()) == {1}, {k: n for k, n in scores.items() if n != 1}
        assert set(scores) >= held_keys
        live = assignment_sections(self.powerschool.state)
        assert not {k for k in set(scores) - held_keys if k[0] in live}  # the others went with a deleted assignment


@contextlib.contextmanager
def served_district(shape: DistrictShape, *, start_powerschool: bool = True) -> Iterator[District]:
    """A district of this shape in both emulators (PowerSchool not listening unless started)."""
    canvas_state, ps_state, credentials = generate(shape)
    powerschool = ServedApp(powerschool_emulator.create_app(ps_state, faults=FaultConfig(seed=2)))
    with ServedApp(canvas_emulator.create_app(canvas_state, faults=FaultConfig(seed=1))) as canvas:
        if not start_powerschool:
            yield District(canvas, powerschool, credentials, shape)
            return
        with powerschool:
            yield District(canvas, powerschool, credentials, shape)


def _trial(store: Store, tmp_path: Path, district: District, **settings: Any) -> Trial:
    values: dict[str, Any] = {"data_dir": tmp_path, "concurrency": 4} | settings
    trial_settings = Settings(**values)
    connect(store, trial_settings, district)
    # The second course: the first carries the sandbox's deliberately broken assignments.
    course = str(max(int(c) for c in district.canvas.state["courses"]))
    return Trial(store, trial_settings, district, course)


@pytest.fixture
def trial(sqlite_store: Store, tmp_path: Path, district: District) -> Trial:
    return _trial(sqlite_store, tmp_path, district)


# --- the fault injection itself -------------------------------------------------------------


def test_faults_are_drawn_per_request_so_a_seeded_trial_replays_in_any_order() -> None:
    """The same seed faults the same requests (method, path, attempt), whatever order they come in."""
    _, state, credentials = generate(SMALL)
    paths = [f"/ws/v1/section/{dcid}" for dcid in sorted(state["sections"])]

    def faulted(order: list[str]) -> dict[tuple[str, int], int]:
        with ServedApp(powerschool_emulator.create_app(state, faults=FaultConfig(seed=41))) as served:
            token = httpx.post(f"{served.url}/oauth/access_token", data={"grant_type": "client_credentials"},
                               auth=(credentials.powerschool_client_id,
                                     credentials.powerschool_client_secret)).json()["access_token"]
            served.control("faults", {"fault_rate": 0.5, "fault_kinds": ["500"]})
            statuses = {}
            for attempt in (1, 2, 3):
                for path in order:
                    answer = httpx.get(served.url + path, headers={"Authorization": f"Bearer {token}"})
                    statuses[(path, attempt)] = answer.status_code
            log = {(f.path, f.attempt) for f in served.faults.log}
            assert log == {key for key, status in statuses.items() if status == 500}
            return statuses

    forward = faulted(paths)
    assert set(forward.values()) == {200, 500}  # some faulted, some not
    assert faulted(list(reversed(paths))) == forward


# --- recovery paths, one test each ---------------------------------------------------------------


def test_a_create_whose_answer_is_lost_is_found_again_not_repeated(trial: Trial) -> None:
    name = trial.valid_names()[0]
    trial.script({"path": ASSIGNMENTS, "methods": ["POST"], "body_contains": f'{name}"', "reset": True})
    result = trial.sync()
    [lost] = trial.scripted_answers()
    assert len(lost.answered_at) == 1  # the create went through and its answer was cut off
    assert result.status == "succeeded" and result.counts["error"] == 0
    trial.assert_synced_once()  # found again by name and due date: one POST for it, scores in place
    assert assignment_creates(trial.powerschool.writes)[trial.create_key(name)] == 1


def test_a_refused_create_is_explained_and_the_next_run_creates_it_once(trial: Trial) -> None:
    name = trial.valid_names()[0]
    trial.script({"path": ASSIGNMENTS, "methods": ["POST"], "body_contains": f'{name}"', "status": 409,
                  "body": CATEGORY_REFUSAL})
    first = trial.sync()
    [error] = [i for i in trial.items(first, "error") if i["object_kind"] == "assignment"]
    assert error["code"] == "category-not-valid-for-section"
    assert error["message"] == "TeacherCategoryID is not active or does not belong to lead teacher for Section"
    assert name not in trial.held_names()
    assert trial.create_key(name) not in assignment_creates(trial.powerschool.writes)  # the refusal took nothing in
    assert {k for k in trial.expected() if k[0] != name} == set(trial.held())  # the other assignments synced

    second = trial.sync()
    assert second.counts["error"] == 0
    trial.assert_synced_once()


def test_a_refused_update_keeps_the_link_and_the_next_run_updates(trial: Trial) -> None:
    trial.sync()
    name = trial.valid_names()[0]
    dest_id = trial.dest_assignment(name)
    before = trial.powerschool.state["assignments"][dest_id]["_assignmentsections"][0]["scoreentrypoints"]
    source = trial.canvas_assignment(name)
    trial.canvas_api("PUT", f"/courses/{trial.course_id}/assignments/{source['id']}",
                     data={"assignment[points_possible]": str(before + 5)})
    trial.script({"path": ASSIGNMENTS + dest_id, "methods": ["PUT"], "status": 409, "body": CATEGORY_REFUSAL})
    mark = len(trial.powerschool.writes)
    second = trial.sync()
    [error] = trial.items(second, "error")
    assert error["object_kind"] == "assignment" and error["code"] == "category-not-valid-for-section"
    assert changes(trial.powerschool.writes[mark:]) == []  # refused: nothing taken in
    assert trial.powerschool.state["assignments"][dest_id]["_assignmentsections"][0]["scoreentrypoints"] == before

    third = trial.sync()
    assert third.counts["updated"] == 1 and third.counts["error"] == 0
    assert assignment_changes(trial.powerschool.writes, "PUT") == {dest_id: 1}  # updated in place, once
    held = trial.powerschool.state["assignments"][dest_id]["_assignmentsections"]
    assert {s["scoreentrypoints"] for s in held} == {before + 5}
    trial.assert_synced_once()


def test_a_refused_delete_keeps_the_assignment_and_the_next_run_deletes_it(trial: Trial) -> None:
    trial.sync()
    name = trial.valid_names()[0]
    dest_id = trial.dest_assignment(name)
    source = trial.canvas_assignment(name)
    trial.canvas_api("DELETE", f"/courses/{trial.course_id}/assignments/{source['id']}")
    trial.script({"path": ASSIGNMENTS + dest_id, "methods": ["DELETE"], "status": 412,
                  "body": {"message": "Assignment has grades associated"}})
    mark = len(trial.powerschool.writes)
    second = trial.sync()
    [error] = trial.items(second, "error")
    assert error["object_kind"] == "assignment" and "grades associated" in error["message"]
    assert dest_id in trial.powerschool.state["assignments"]  # still there, with its scores
    assert changes(trial.powerschool.writes[mark:]) == []

    third = trial.sync()
    assert third.counts["deleted"] == 1 and third.counts["error"] == 0
    assert dest_id not in trial.powerschool.state["assignments"]
    assert assignment_changes(trial.powerschool.writes, "DELETE") == {dest_id: 1}
    trial.assert_synced_once(deleted=frozenset({name}))


def test_a_destination_unreachable_during_score_writes_loses_nothing(sqlite_store: Store, tmp_path: Path) -> None:
    # One section: one score write per assignment, given up after the client's every retry.
    with served_district(DistrictShape(courses=1, sections=1, students=6, assignments=4, seed=11, broken=False)) \
            as district:
        trial = _trial(sqlite_store, tmp_path, district)
        _unreachable_during_score_writes(trial)


def _unreachable_during_score_writes(trial: Trial) -> None:
    name = trial.valid_names()[0]
    assignment_id = str(trial.canvas_assignment(name)["id"])
    expected = {k: v for k, v in trial.expected().items() if k[0] == name}
    trial.script({"path": SCORES, "methods": ["PUT"], "drop": True, "times": None})  # every score write cut off
    first = trial.sync(assignment_id)
    assert first.counts["created"] == 1  # the assignment
    score_errors = [i for i in trial.items(first, "error") if i["object_kind"] == "score"]
    assert len(score_errors) == len(expected)
    assert {i["code"] for i in score_errors} == {"destination-unreachable"}
    assert trial.held() == {} and score_writes(trial.powerschool.writes) == {}
    assert len(trial.scripted_answers()[0].answered_at) >= 2  # each batch was tried again before giving up

    trial.script()
    mark = len(trial.powerschool.writes)
    second = trial.sync(assignment_id)
    assert second.counts["error"] == 0 and second.counts["created"] == len(expected)
    assert all(w.path == SCORES for w in changes(trial.powerschool.writes[mark:]))  # the assignment was kept
    assert trial.held() == expected
    trial.assert_synced_once({name})


def test_an_assignment_deleted_in_the_destination_between_runs_is_unlinked_then_made_again(trial: Trial) -> None:
    trial.sync()
    name = trial.valid_names()[0]
    dest_id = trial.dest_assignment(name)
    trial.powerschool.app.state.emulator.delete_by_hand(dest_id)  # a teacher deletes it in PowerTeacher Pro
    mark = len(trial.powerschool.writes)
    second = trial.sync()
    [skipped] = [i for i in trial.items(second, "skipped") if i["code"] == "destination-assignment-missing"]
    assert skipped["object_kind"] == "assignment"
    assert changes(trial.powerschool.writes[mark:]) == []  # the link is dropped; nothing written
    assert name not in trial.held_names()

    third = trial.sync()
    assert third.counts["error"] == 0
    assert trial.held() == trial.expected()
    creates = assignment_creates(trial.powerschool.writes)
    assert creates[trial.create_key(name)] == 2  # the one the teacher deleted, and the new one
    assert all(n == 1 for key, n in creates.items() if key != trial.create_key(name))
    new_id = trial.dest_assignment(name)
    assert new_id != dest_id
    new_asids = {asid for asid, (aid, _, _) in assignment_sections(trial.powerschool.state).items() if aid == new_id}
    rewritten = {k for k in score_writes(trial.powerschool.writes[mark:]) if k[0] in new_asids}
    assert len(rewritten) == len([k for k in trial.expected() if k[0] == name])  # its scores, once each


def test_a_401_in_the_middle_of_a_run_fetches_a_new_token_and_goes_on(trial: Trial) -> None:
    trial.script({"path": SCORES, "methods": ["PUT"], "skip": 2, "status": 401,
                  "headers": {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="expired"'},
                  "body": {"message": "Access token expired"}})
    result = trial.sync()
    assert len(trial.scripted_answers()[0].answered_at) == 1
    assert result.status == "succeeded" and result.counts["error"] == 0
    assert trial.powerschool.control("stats")["requests"]["POST /oauth/access_token"] == 2
    trial.assert_synced_once()  # the refused write was sent again with the new token, once


def test_a_destination_refusing_connections_fails_the_run_and_the_next_run_syncs_once(
        sqlite_store: Store, tmp_path: Path) -> None:
    with served_district(SMALL, start_powerschool=False) as district:  # PowerSchool refuses connections
        powerschool = district.powerschool
        trial = _trial(sqlite_store, tmp_path, district)
        first = trial.sync()
        assert first.status == "failed"
        assert first.failure is not None and "unavailable" in first.failure
        assert f"{powerschool.url}/oauth/access_token" in first.failure
        assert "client id and secret" not in first.failure  # not the credentials' fault
        with powerschool:
            assert powerschool.writes == [] and powerschool.state["assignments"] == {}
            second = trial.sync()
            assert second.status == "succeeded"
            trial.assert_synced_once()


def test_retry_after_given_as_an_http_date_is_waited_for(sqlite_store: Store, tmp_path: Path,
                                                          district: District) -> None:
    trial = _trial(sqlite_store, tmp_path, district, concurrency=1)  # one request at a time
    until = math.floor(time.time() + 4)
    trial.script({"path": SCORES, "methods": ["PUT"], "status": 503,
                  "headers": {"Retry-After": email.utils.formatdate(until, usegmt=True)}},
                 {"path": SCORES, "methods": ["PUT"], "pass_through": True, "times": None})
    clock = time.time() - time.monotonic()  # monotonic -> wall clock
    result = trial.sync(str(trial.canvas_assignment(trial.valid_names()[0])["id"]))
    refused, passed = trial.scripted_answers()
    assert result.status == "succeeded"
    assert refused.answered_at[0] + clock < until - 1.0  # the date was well ahead of the 503...
    # ...and the refused batch was sent again only once it came (the other sections' batches may go before)
    assert max(passed.answered_at) + clock >= until - 0.05
    trial.assert_synced_once({trial.valid_names()[0]})


def test_answers_without_the_section_ids_header_are_read_back(trial: Trial) -> None:
    """PowerTeacher Pro's create and update answers carry ``AssignmentSectionIds``; without it the
    connector must read the assignment back, and the scores still land in the right sections."""
    trial.script({"path": ASSIGNMENTS, "methods": ["POST"], "drop_headers": ["AssignmentSectionIds"], "times": None})
    first = trial.sync()
    creates = len(assignment_creates(trial.powerschool.writes))
    assert len(trial.scripted_answers()[0].answered_at) == creates > 0
    assert first.counts["error"] == 0
    reads = trial.powerschool.control("stats")["requests"].get("GET /ws/xte/section/assignment/{id}", 0)
    assert reads == creates  # each create was read back once
    trial.assert_synced_once()

    name = trial.valid_names()[0]
    dest_id = trial.dest_assignment(name)
    asids = {s["sectionsdcid"]: s["assignmentsectionid"]
             for s in trial.powerschool.state["assignments"][dest_id]["_assignmentsections"]}
    source = trial.canvas_assignment(name)
    trial.canvas_api("PUT", f"/courses/{trial.course_id}/assignments/{source['id']}",
                     data={"assignment[points_possible]": str(source["points_possible"] + 1)})
    trial.script({"path": ASSIGNMENTS + dest_id, "methods": ["PUT"], "drop_headers": ["AssignmentSectionIds"]})
    second = trial.sync()
    assert len(trial.scripted_answers()[0].answered_at) == 1
    assert second.counts["updated"] == 1 and second.counts["error"] == 0
    held = trial.powerschool.state["assignments"][dest_id]["_assignmentsections"]
    assert {s["sectionsdcid"]: s["assignmentsectionid"] for s in held} == asids
    trial.assert_synced_once()

