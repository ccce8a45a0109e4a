"""State reporting's less travelled paths, over real HTTP against the Ed-Fi emulator: answers lost
or refused during the libcurl stream and their careful one-by-one retry, a token revoked mid-run,
deletes the ODS refuses or already lost, a natural-key change whose delete half is refused, the
resource toggle, a resync's orphans, and the client's own errors (not an ODS, reads refused,
no answer at all). Every check is on the emulator's raw state and its log of accepted writes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from passback.connectors.edfi import client as client_module
from passback.connectors.edfi.client import EdFiClient
from passback.emulators import edfi as edfi_emulator
from passback.errors import OutcomeUnknown, Refused
from passback.sandbox.edfi_district import STATE_FINAL_GRADE, EdFiShape, generate
from passback.services import statereport as state_service
from passback.settings import Settings
from passback.store.db import Store
from passback.store.events import pending
from tests.conftest import ServedApp, free_port
from tests.e2e.test_edfi_grades import FINAL, GRADING_PERIOD_TYPE, World, edfi_id, items_of, replace, served_world

GRADES = "/data/v3/ed-fi/grades"
CLIENT_ID, CLIENT_SECRET = "sandbox-edfi", "sandbox-edfi-secret"
QUIET = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0, "skipped": 0, "error": 0}


@pytest.fixture
def world(sqlite_store: Store, tmp_path: Path) -> Iterator[World]:
    with served_world(sqlite_store, Settings(data_dir=tmp_path, concurrency=4)) as built:
        yield built


def key_of(record: dict[str, Any]) -> tuple[Any, ...]:
    """A grade's natural key as the emulator computes it (not passback's own function)."""
    return edfi_emulator.KEYS["grades"](record)


def grade_posts(world: World) -> list[Any]:
    return [w for w in world.ods.writes if w.method == "POST" and w.path == GRADES]


def grade_deletes(world: World) -> list[str]:
    return [w.path.rsplit("/", 1)[1] for w in world.ods.writes if w.method == "DELETE" and w.path.startswith(GRADES)]


def script(world: World, *answers: dict[str, Any]) -> None:
    world.ods.control("faults", {"scripted": list(answers)})


def of_student(student: str) -> str:
    """Text only the POST bodies of this student's grades hold (the bodies are compact JSON)."""
    return f'"studentUniqueId":"{student}"'


def record_id_of(world: World, student: str) -> str:
    return next(k for k, g in world.ods_grades.items()
                if g["studentSectionAssociationReference"]["studentUniqueId"] == student)


def outcome_of(world: World, run_id: str, index: int) -> dict[str, Any]:
    """The run's one item for the index-th posted grade (items are named by the grade's record)."""
    found = [i for key, i in items_of(world, run_id).items() if key.split("|")[0] == world.grades[index].source_id]
    assert len(found) == 1, found
    return found[0]


def data_writes(world: World) -> list[Any]:
    return [w for w in world.ods.writes if w.path.startswith("/data/")]


def one_record_per_key(world: World) -> None:
    keys = [key_of(g) for g in world.ods_grades.values()]
    assert len(keys) == len(set(keys))


def test_the_bodies_name_their_student_as_the_scripts_expect(world: World) -> None:
    """The scripts below pick a grade by a bit of its POST body: check that bit is there, and once."""
    assert len({g.student_id for g in world.grades}) == 30
    world.run()
    bodies = [w.body for w in grade_posts(world)]
    assert len(bodies) == 30
    for grade in world.grades:
        assert sum(of_student(grade.student_id).encode() in b for b in bodies) == 1


# --- the stream: lost answers, server errors and throttling, retried one by one ----------------


def test_answers_lost_or_refused_for_a_while_during_the_stream_are_retried_and_land_once(world: World) -> None:
    post = {"path": GRADES, "methods": ["POST"]}
    script(world, {**post, "status": 503, "times": 2}, {**post, "status": 429, "headers": {"Retry-After": "0"}},
           {**post, "reset": True, "times": 2}, {**post, "drop": True})
    result = world.run()
    assert world.ods.control("faults")["injected"]["scripted"] == 6
    assert result.status == "succeeded" and result.counts["error"] == 0
    assert result.counts["created"] + result.counts["updated"] == 30
    assert len(world.ods_grades) == 30
    one_record_per_key(world)
    # What the ODS took in: each record once, but the two whose answers were cut off after the handler
    # ran, which were taken twice (the lost create, then the retry that found it: an update, no double).
    accepted = grade_posts(world)
    per_key = Counter(key_of(w.json()) for w in accepted)
    assert set(per_key) == {key_of(g) for g in world.ods_grades.values()}
    assert sorted(per_key.values()) == [1] * 28 + [2] * 2
    twice = [k for k, n in per_key.items() if n == 2]
    assert [[w.status for w in accepted if key_of(w.json()) == k] for k in twice] == [[201, 200], [201, 200]]
    # Every posted grade is known by the record it has in the ODS: a resync finds nothing to fix.
    assert pending(world.store, edfi_id(world)) == []
    resync = world.run(resync=True)
    assert (resync.counts["created"], resync.counts["deleted"], resync.counts["error"]) == (0, 0, 0)
    assert len(world.ods_grades) == 30 and len(grade_posts(world)) == 32 + resync.counts["updated"]


def test_a_token_revoked_mid_run_is_renewed_and_every_refused_post_is_sent_again(world: World) -> None:
    emulator = world.ods.app.state.emulator
    revoked: list[int] = []

    def progress(answered: int, planned: int) -> None:  # the first report comes before any POST is sent
        if planned and not revoked:
            revoked.append(len(emulator.tokens))
            emulator.tokens.clear()

    result = asyncio.run(state_service.report(world.store, world.settings, "sis-export", "state-edfi",
                                              progress=progress))
    assert revoked == [1]
    assert result.counts["created"] == 30 and result.counts["error"] == 0
    assert emulator.requests["POST /oauth/token"] == 2  # one new token, not one per refused POST
    assert emulator.requests[f"POST {GRADES}"] == 60  # 30 refused with 401, 30 sent again
    assert len(grade_posts(world)) == 30 and len(world.ods_grades) == 30
    one_record_per_key(world)


def test_refusals_during_the_stream_and_on_the_retry_are_explained_and_sent_by_the_next_run(world: World) -> None:
    rejected, unresolved, late = (world.grades[i].student_id for i in (0, 1, 2))
    post = {"path": GRADES, "methods": ["POST"]}
    problem = {"detail": "The request is invalid.", "validationErrors": {"$.letterGradeEarned": ["Too long."]}}
    script(world,
           {**post, "status": 400, "body": problem, "body_contains": of_student(rejected)},
           {**post, "status": 409, "body": {"detail": "The referenced 'GradingPeriod' item does not exist."},
            "body_contains": of_student(unresolved)},
           {**post, "status": 503, "body_contains": of_student(late)},  # the stream's answer: retried one by one
           {**post, "status": 409, "body": {"detail": "Still not there."}, "body_contains": of_student(late)})
    result = world.run()
    assert result.status == "completed_with_errors"
    assert (result.counts["created"], result.counts["error"]) == (27, 3)
    errors = [outcome_of(world, result.run_id, i) for i in range(3)]
    assert [(i["outcome"], i["code"]) for i in errors] == [
        ("error", "destination-rejected"), ("error", "edfi-unresolved-reference"), ("error", "edfi-unresolved-reference")]
    assert [i["message"] for i in errors] == [
        "The destination refused the write: The request is invalid. $.letterGradeEarned: Too long.",
        "The ODS refused the grade: The referenced 'GradingPeriod' item does not exist.",
        "The ODS refused the grade: Still not there."]
    assert sum(i["outcome"] == "error" for i in items_of(world, result.run_id).values()) == 3
    assert not any(world.held(s) for s in (rejected, unresolved, late)) and len(world.ods_grades) == 27
    waiting = {e.posted_id for e in pending(world.store, edfi_id(world))}
    assert waiting == {world.grades[i].source_id for i in range(3)}

    caught_up = world.run()  # the script is spent: the three are sent, once each, and nothing else is
    assert caught_up.counts["created"] == 3 and caught_up.counts["error"] == 0
    assert len(world.ods_grades) == 30 and len(grade_posts(world)) == 30
    one_record_per_key(world)
    assert pending(world.store, edfi_id(world)) == []


# --- deletes -------------------------------------------------------------------------------------


def test_deletes_refused_unanswered_or_already_done_in_the_ods(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "_backoff", lambda attempt: 0.01)  # six attempts, quickly
    world.run()
    lost, refused, unreachable = (world.grades[i].student_id for i in (0, 1, 2))
    lost_id, refused_id, unreachable_id = (record_id_of(world, s) for s in (lost, refused, unreachable))
    world.ods.app.state.emulator.delete("grades", lost_id)  # someone deleted it in the ODS already
    for index in (0, 1, 2):
        replace(world, index, deleted=True)
    world.write()
    delete = {"methods": ["DELETE"]}
    script(world, {**delete, "path": f"{GRADES}/{refused_id}", "status": 400, "body": {"detail": "Not now."}},
           {**delete, "path": f"{GRADES}/{unreachable_id}", "status": 503, "times": None})
    result = world.run()
    assert result.counts["deleted"] == 1 and result.counts["error"] == 2  # the lost record's 404 is done
    done, no, unknown = (outcome_of(world, result.run_id, i) for i in range(3))
    assert (done["outcome"], done["dest_id"]) == ("deleted", lost_id)
    assert (no["code"], no["message"]) == ("destination-rejected", "The destination refused the write: Not now.")
    assert unknown["code"] == "destination-unreachable" and "no answer after 6 attempts" in unknown["message"]
    assert world.ods.control("faults")["injected"]["scripted"] == 1 + 6  # one refusal; six attempts unanswered
    assert set(world.ods_grades) >= {refused_id, unreachable_id} and len(world.ods_grades) == 29
    assert grade_deletes(world) == []  # nothing was deleted by this run (the lost one was gone already)
    waiting = {e.posted_id for e in pending(world.store, edfi_id(world))}
    assert waiting == {world.grades[1].source_id, world.grades[2].source_id}

    script(world)
    again = world.run()
    assert again.counts["deleted"] == 2 and again.counts["error"] == 0 and not grade_posts(world)[30:]
    assert sorted(grade_deletes(world)) == sorted([refused_id, unreachable_id])
    assert len(world.ods_grades) == 27 and pending(world.store, edfi_id(world)) == []
    assert world.run().counts == QUIET


def test_a_natural_key_change_whose_delete_is_refused_posts_no_second_record(world: World) -> None:
    world.run()
    stuck = world.grades[0].student_id
    stuck_id = record_id_of(world, stuck)
    script(world, {"path": f"{GRADES}/{stuck_id}", "methods": ["DELETE"], "status": 400,
                   "body": {"detail": "Referenced by a report card."}})
    world.prefs(final_grade_type=STATE_FINAL_GRADE, grade_types={"S1 Final": STATE_FINAL_GRADE})
    result = world.run()
    assert (result.counts["deleted"], result.counts["created"], result.counts["error"]) == (29, 29, 1)
    refused = outcome_of(world, result.run_id, 0)
    assert (refused["code"], refused["message"]) == ("destination-rejected",
                                                     "The destination refused the write: Referenced by a report card.")
    # The grade's old record stays, and its new one was not posted beside it: one record for the grade.
    assert [g["gradeTypeDescriptor"] for g in world.held(stuck)] == [FINAL]
    assert not [w for w in grade_posts(world)[30:] if of_student(stuck).encode() in w.body]
    assert Counter(g["gradeTypeDescriptor"] for g in world.ods_grades.values()) == {STATE_FINAL_GRADE: 29, FINAL: 1}

    script(world)
    again = world.run()  # the refusal is gone: the grade's record is replaced, once
    assert (again.counts["deleted"], again.counts["created"], again.counts["error"]) == (1, 1, 0)
    assert [g["gradeTypeDescriptor"] for g in world.held(stuck)] == [STATE_FINAL_GRADE]
    assert len(world.ods_grades) == 30 and len(grade_posts(world)) == 60
    assert grade_deletes(world).count(stuck_id) == 1


# --- the toggle and resync ------------------------------------------------------------------------


def resource_off_with_a_change_and_a_delete(world: World) -> tuple[Any, str]:
    """The first send, then the resource off, a letter changed and a grade deleted, and a sync."""
    world.run()
    writes = len(data_writes(world))
    off = state_service.toggle(world.store, world.settings, "state-edfi", False)
    assert (off["enabled"], off["was"]) == (False, True) and "deletes wait" in off["message"]
    assert state_service.toggle(world.store, world.settings, "state-edfi", False)["message"].startswith(
        "The Grades resource was already off")
    changed = replace(world, 0, letter="A" if world.grades[0].letter != "A" else "B")
    replace(world, 1, deleted=True)
    kept_id = record_id_of(world, world.grades[1].student_id)
    world.write()
    idle = world.run()
    assert idle.counts["created"] == idle.counts["updated"] == idle.counts["deleted"] == 0
    assert idle.counts["skipped"] == 2
    assert len(data_writes(world)) == writes and kept_id in world.ods_grades  # not one write went out
    assert world.grades[1].source_id in {e.posted_id for e in pending(world.store, edfi_id(world))}  # the delete waits
    on = state_service.toggle(world.store, world.settings, "state-edfi", True)
    assert (on["enabled"], on["was"]) == (True, False) and "the next sync sends what changed" in on["message"]
    return changed, kept_id


def test_with_the_resource_off_nothing_is_sent_and_the_waiting_delete_goes_with_the_next_sync(world: World) -> None:
    _, kept_id = resource_off_with_a_change_and_a_delete(world)
    caught_up = world.run()  # a plain sync, no resync
    assert caught_up.counts["deleted"] == 1 and caught_up.counts["error"] == 0
    assert grade_deletes(world) == [kept_id] and kept_id not in world.ods_grades and len(world.ods_grades) == 29
    assert pending(world.store, edfi_id(world)) == []


def test_a_change_made_while_the_resource_was_off_is_sent_by_the_next_sync(world: World) -> None:
    changed, _ = resource_off_with_a_change_and_a_delete(world)
    caught_up = world.run()
    held = world.held(changed.student_id)[0]
    assert held["letterGradeEarned"] == {"A": "4", "B": "3"}[changed.letter]
    assert caught_up.counts["updated"] == 1


def test_a_resync_deletes_only_the_records_nobody_sent(world: World) -> None:
    world.run()
    emulator = world.ods.app.state.emulator
    strays = [emulator.upsert("grades", dict(g, gradeTypeDescriptor=GRADING_PERIOD_TYPE))[0]
              for g in list(world.ods_grades.values())[:3]]
    sent = set(world.ods_grades) - set(strays)
    result = world.run(resync=True)
    assert result.counts["deleted"] == 3 and result.counts["created"] == 0 and result.counts["error"] == 0
    assert sorted(grade_deletes(world)) == sorted(strays)
    assert set(world.ods_grades) == sent and len(grade_posts(world)) == 30 + result.counts["updated"]


def test_a_resync_whose_orphan_delete_is_refused_says_so(world: World) -> None:
    world.run()
    emulator = world.ods.app.state.emulator
    stray = emulator.upsert("grades", dict(next(iter(world.ods_grades.values())),
                                           gradeTypeDescriptor=GRADING_PERIOD_TYPE))[0]
    script(world, {"path": f"{GRADES}/{stray}", "methods": ["DELETE"], "status": 400, "body": {"detail": "No."}})
    result = world.run(resync=True)
    assert stray in world.ods_grades and result.counts["deleted"] == 0
    assert result.counts["error"] == 1 or result.problems, (result.status, result.counts, result.problems)


# --- the preferences' checks ----------------------------------------------------------------------


def test_the_preferences_refuse_what_is_not_a_descriptor_a_sced_code_or_an_edfi_connection(world: World) -> None:
    with pytest.raises(state_service.StateReportingError, match="not a descriptor URI"):
        state_service.map_task(world.store, world.settings, "state-edfi", "S2 Final", "Final", [])
    with pytest.raises(state_service.StateReportingError, match="not a SCED subject area code"):
        state_service.map_subject(world.store, world.settings, "state-edfi", "MATH", "uri://x/AcademicSubject#M")
    with pytest.raises(state_service.StateReportingError, match="'sis-export' is not an Ed-Fi connection"):
        state_service.change_preferences(world.store, world.settings, "sis-export", {"enabled": False})
    grades = state_service.map_subject(world.store, world.settings, "state-edfi", "2", "uri://x/AcademicSubject#M")
    assert list(grades["subject_descriptors"].values()) == ["uri://x/AcademicSubject#M"]


# --- the client's own errors ------------------------------------------------------------------------


def root_app(urls: dict[str, str]) -> Starlette:
    """A server whose root document is ``{"urls": urls}``: not an ODS when they are not an ODS's."""

    async def root(request: Request) -> JSONResponse:
        return JSONResponse({"version": "1.0", "urls": urls})

    return Starlette(routes=[Route("/", root, methods=["GET"])])


def test_a_server_that_is_not_an_ods_is_told_clearly() -> None:
    async def attempt(url: str) -> None:
        client = EdFiClient(url, CLIENT_ID, CLIENT_SECRET, attempts=2)
        try:
            await client.authenticate()
        finally:
            await client.aclose()
            await client.aclose()  # closing twice is harmless

    with ServedApp(root_app({"oauth": "http://127.0.0.1:1/oauth/token"})) as served:
        with pytest.raises(Refused, match="does not look like an Ed-Fi ODS/API .* check the connection's URL") as refused:
            asyncio.run(attempt(served.url + "/"))
        assert str(refused.value).startswith(f"{served.url} does not look like")  # the base, without its slash


def test_no_answer_at_all_is_an_unknown_outcome_after_the_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "_backoff", lambda attempt: 0.01)
    client = EdFiClient(f"http://127.0.0.1:{free_port()}", CLIENT_ID, CLIENT_SECRET, attempts=3)
    with pytest.raises(OutcomeUnknown, match="GET http://127.0.0.1:.*/: no answer after 3 attempts"):
        asyncio.run(client.discover())
    asyncio.run(client.aclose())


@pytest.fixture
def ods() -> Iterator[ServedApp]:
    state, _ = generate(EdFiShape(grades=30, students_per_section=10))
    with ServedApp(edfi_emulator.create_app(state)) as served:
        yield served


def test_the_clients_reads_renew_a_revoked_token_and_name_a_refused_read(
        ods: ServedApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "_backoff", lambda attempt: 0.01)
    emulator = ods.app.state.emulator
    sessions = "/data/v3/ed-fi/sessions"

    async def scenario() -> None:
        client = EdFiClient(ods.url, CLIENT_ID, CLIENT_SECRET, concurrency=2, attempts=3)
        try:
            first = await client.get_all("sessions")
            emulator.tokens.clear()  # the ODS forgot the token (expired, restarted)
            assert await client.get_all("sessions") == first and first
            assert emulator.requests["POST /oauth/token"] == 2

            with pytest.raises(Refused, match=r"GET .*/ed-fi/sessions offset 0: HTTP 400") as refused:
                await client.get_all("sessions", {"minChangeVersion": "soon"})
            assert refused.value.status == 400

            ods.control("faults", {"scripted": [{"path": sessions, "methods": ["GET"], "drop": True, "times": None}]})
            with pytest.raises(OutcomeUnknown, match=r"GET .*/ed-fi/sessions: no answer after 3 attempts"):
                await client.get_all("sessions")
            assert ods.control("faults")["injected"]["scripted"] == 3

            ods.control("faults", {"scripted": [{"path": "/changeQueries/v1/availableChangeVersions", "status": 403}]})
            with pytest.raises(Refused, match="availableChangeVersions: HTTP 403"):
                await client.newest_change_version()
            assert await client.newest_change_version() == emulator.tracking["version"]

            answer = await client.upsert("grades", b'{"gradeTypeDescriptor": "' + FINAL.encode() + b'"}')
            assert answer.status == 400 and not answer.ok and answer.record_id is None
            assert "gradingPeriodReference" in answer.detail
            assert not [w for w in ods.writes if w.path == GRADES]
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_without_change_queries_in_the_root_document_there_is_no_change_version(ods: ServedApp) -> None:
    urls = {"oauth": f"{ods.url}/oauth/token", "dataManagementApi": f"{ods.url}/data/v3/"}
    with ServedApp(root_app(urls)) as front:
        async def scenario() -> tuple[int | None, int]:
            client = EdFiClient(front.url, CLIENT_ID, CLIENT_SECRET)
            try:
                return await client.newest_change_version(), len(await client.get_all("sessions"))
            finally:
                await client.aclose()

        version, sessions = asyncio.run(scenario())
    assert version is None and sessions == len(ods.state["resources"]["sessions"]) > 0
    assert "GET /changeQueries/v1/availableChangeVersions" not in ods.app.state.emulator.requests
