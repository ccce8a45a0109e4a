"""The runs service: each pipeline through submit and execute with one recorder, and one failure
policy: an exception anywhere (here inside a connector's mapper) ends the run as failed."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from passback.connectors.canvas import source as canvas_source
from passback.connectors.csv_export.source import write_export
from passback.emulators import edfi as edfi_emulator
from passback.errors import Conflict
from passback.model import posted_rows
from passback.pipeline.run import RunRequest, RunScope
from passback.sandbox.edfi_district import EdFiShape, default_preferences, generate
from passback.services import runs
from passback.services.views import exit_code, sync_view
from passback.services.statereport import report
from passback.settings import Settings
from passback.store.connections import get_connection, save_connection
from passback.store.db import Store
from passback.store.history import get_run, get_run_items
from passback.store.identity import Pairing, load_identities
from passback.store.tables import audit_log, runs as runs_table
from passback.vault import load_key
from tests.conftest import District, ServedApp
from tests.e2e.test_sync_district import connect


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, concurrency=4)


def _ids(store: Store, settings: Settings, source: str, destination: str) -> tuple[int, int]:
    key = load_key(settings)
    return get_connection(store, key, source).id, get_connection(store, key, destination).id


def _no_run_left_running(store: Store) -> bool:
    with store.engine.connect() as db:
        return not db.execute(sa.select(runs_table.c.id).where(runs_table.c.status == "running")).first()


def test_gradebook_run_goes_through_submit_and_execute(store: Store, settings: Settings, district: District) -> None:
    connect(store, settings, district)
    source_id, dest_id = _ids(store, settings, "lms", "sis")
    course = str(min(int(c) for c in district.canvas.state["courses"]))
    request = RunRequest(pipeline="gradebook", source_connection_id=source_id, destination_connection_id=dest_id,
                         scope=RunScope(course_id=course), actor="test")
    run_id = runs.submit(store, request)
    queued = get_run(store, run_id)
    assert queued is not None and queued["status"] == "queued" and queued["pipeline"] == "gradebook"
    assert RunRequest.model_validate(queued["request"]) == request  # the stored request is the whole request

    result = asyncio.run(runs.execute(store, settings, run_id))  # opens its own connectors from the ids
    assert result.run_id == run_id and result.status in ("succeeded", "completed_with_errors")
    # One recorder: every counted outcome is an item in the history, every written score has its audit entry.
    items = get_run_items(store, run_id)
    assert Counter(i["outcome"] for i in items) == Counter({k: v for k, v in result.counts.items() if v})
    with store.engine.connect() as db:
        audited = db.execute(sa.select(sa.func.count()).select_from(audit_log)
                             .where(audit_log.c.run_id == run_id)).scalar_one()
    written_scores = sum(1 for i in items if i["object_kind"] == "score" and i["outcome"] == "created")
    assert written_scores > 0 and audited == written_scores
    rows = load_identities(store, Pairing(source_id, dest_id), ("assignment", "score"), f"{course}:")
    assert {k for (_, k) in rows} >= {i["source_id"] for i in items if i["outcome"] == "created"}
    stored = get_run(store, run_id)
    assert stored is not None and stored["status"] == result.status and stored["counts"] == result.counts

    with pytest.raises(Conflict):  # a run is carried out once
        asyncio.run(runs.execute(store, settings, run_id))


def test_an_exception_in_a_source_mapper_fails_the_run_with_its_reason(
        sqlite_store: Store, settings: Settings, district: District, monkeypatch: pytest.MonkeyPatch) -> None:
    connect(sqlite_store, settings, district)

    def broken(pages: list) -> None:  # type: ignore[type-arg]
        raise KeyError("workflow_state")  # a bug in the mapper itself (a bad row is a problem of the run instead)

    monkeypatch.setattr(canvas_source, "merge_submissions", broken)
    results = asyncio.run(runs.sync_courses(sqlite_store, settings, runs.Route("lms", "sis"), all_courses=True))
    assert results and all(r.status == "failed" for r in results)
    assert all("KeyError" in (r.failure or "") and "workflow_state" in (r.failure or "") for r in results)
    for result in results:
        stored = get_run(sqlite_store, result.run_id or "")
        assert stored is not None and stored["status"] == "failed" and "KeyError" in stored["failure"]
    assert _no_run_left_running(sqlite_store)
    summary = sync_view(results)  # what `sync --json` prints: a course that failed is an error in the totals
    assert summary.counts["error"] >= len(results) and exit_code(results) == 1


def _stored(prefs):  # type: ignore[no-untyped-def]
    return {"grade_types": prefs.grade_types, "grading_periods": {k: list(v) for k, v in prefs.grading_periods.items()},
            "state_codes": prefs.state_codes, "school_years": sorted(prefs.school_years)}


@pytest.fixture
def ods_world(sqlite_store: Store, tmp_path: Path) -> Iterator[tuple[Store, Settings, ServedApp, Path]]:
    state, grades = generate(EdFiShape(grades=60))
    with ServedApp(edfi_emulator.create_app(state)) as ods:
        settings = Settings(data_dir=tmp_path, concurrency=4)
        key = load_key(settings)
        save_connection(sqlite_store, key, name="state-edfi", kind="edfi", base_url=ods.url,
                        credentials={"client_id": "sandbox-edfi", "client_secret": "sandbox-edfi-secret"},
                        settings={"grades": _stored(default_preferences())})
        export = tmp_path / "grades.csv"
        write_export(export, grades)
        save_connection(sqlite_store, key, name="sis-export", kind="csv", base_url=str(export), credentials={})
        yield sqlite_store, settings, ods, export


def test_state_reporting_run_goes_through_submit_and_execute(ods_world) -> None:  # type: ignore[no-untyped-def]
    store, settings, ods, _ = ods_world
    source_id, dest_id = _ids(store, settings, "sis-export", "state-edfi")
    request = RunRequest(pipeline="statereport", source_connection_id=source_id, destination_connection_id=dest_id,
                         trigger="event", actor="test")
    run_id = runs.submit(store, request)
    assert (get_run(store, run_id) or {})["status"] == "queued"
    result = asyncio.run(runs.execute(store, settings, run_id))
    held = ods.state["resources"]["grades"]
    assert result.status == "succeeded" and result.counts["created"] == len(held) > 0
    items = get_run_items(store, run_id)
    assert sorted(i["dest_id"] for i in items if i["outcome"] == "created") == sorted(held)
    rows = load_identities(store, Pairing(source_id, dest_id), ("edfi-grade",))
    assert sorted(r.dest_id for r in rows.values()) == sorted(held)
    assert (get_run(store, run_id) or {})["status"] == "succeeded"


def test_an_exception_in_the_export_mapper_fails_the_state_run(
        ods_world, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    store, settings, ods, _ = ods_world

    def broken(row: dict) -> None:  # type: ignore[type-arg]
        raise TypeError("a row that no rule expected")

    monkeypatch.setattr(posted_rows, "parse_row", broken)
    result = asyncio.run(report(store, settings, "sis-export", "state-edfi"))
    assert result.status == "failed" and "TypeError: a row that no rule expected" in (result.failure or "")
    stored = get_run(store, result.run_id or "")
    assert stored is not None and stored["status"] == "failed" and stored["pipeline"] == "statereport"
    assert _no_run_left_running(store)
    assert not ods.state["resources"]["grades"]  # nothing was sent


def test_a_state_reporting_send_reports_its_progress(ods_world) -> None:  # type: ignore[no-untyped-def]
    store, settings, ods, _ = ods_world
    heard: list[tuple[int, int]] = []
    result = asyncio.run(report(store, settings, "sis-export", "state-edfi", progress=lambda d, t: heard.append((d, t))))
    created = len(ods.state["resources"]["grades"])
    assert result.counts["created"] == created > 0
    assert heard and heard[-1] == (created, created)  # the bar ends full, at the records sent
    assert all(done <= total for done, total in heard) and [d for d, _ in heard] == sorted(d for d, _ in heard)
