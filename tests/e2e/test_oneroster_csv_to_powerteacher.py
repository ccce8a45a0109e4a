"""A OneRoster CSV bundle synced into PowerTeacher Pro (the PowerSchool emulator over real HTTP),
through the run service with saved connections; every assignment and score checked on the
emulator's raw state against what the CSV rows and seed 000's transfer tables say, computed
here without passback's code (late passes as late, missing does not pass, excused is exempt)."""

from __future__ import annotations

import asyncio
import csv
import io
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from passback.emulators import powerschool as powerschool_emulator
from passback.emulators.faults import FaultConfig
from passback.pipeline.plan import Scope
from passback.pipeline.run import RunResult
from passback.sandbox.district import Credentials, generate
from passback.sandbox.oneroster_bundle import Bundle, build_bundle
from passback.services import connections as connection_service
from passback.services.runs import Route, sync_courses
from passback.settings import Settings
from passback.store.db import Store
from passback.store.history import get_run_items
from passback.testing.writes import assignment_changes, changes, score_rows
from tests.conftest import SMALL, ServedApp
from tests.e2e.expected import held_destination_scores

ROUTE = Route("lms", "sis")
TITLE_LIMIT = 30  # the district's (PASSBACK_DISTRICT_TITLE_LIMIT's default)


@dataclass
class Sis:
    powerschool: ServedApp
    canvas: dict[str, Any]
    credentials: Credentials

    @property
    def state(self) -> dict[str, Any]:
        return self.powerschool.state


@pytest.fixture
def sis() -> Iterator[Sis]:
    canvas, powerschool, credentials = generate(SMALL)
    with ServedApp(powerschool_emulator.create_app(powerschool, faults=FaultConfig(seed=2))) as served:
        yield Sis(served, canvas, credentials)


def connect(store: Store, settings: Settings, sis: Sis, path: Path) -> None:
    connection_service.save(store, settings, name="lms", kind="oneroster_csv", url=str(path), credentials={})
    connection_service.save(store, settings, name="sis", kind="powerschool", url=sis.powerschool.url,
                            credentials={"client_id": sis.credentials.powerschool_client_id,
                                         "client_secret": sis.credentials.powerschool_client_secret})


def sync_all(store: Store, settings: Settings) -> list[RunResult]:
    return asyncio.run(sync_courses(store, settings, ROUTE, all_courses=True))


def total(results: list[RunResult], outcome: str) -> int:
    return sum(r.counts[outcome] for r in results)


# --- what PowerTeacher Pro must hold, from the CSV text and the seed's tables ---------------------


def csv_rows(path: Path, name: str) -> list[tuple[int, dict[str, str]]]:
    with zipfile.ZipFile(path) as bundle:
        text = bundle.read(name).decode("utf-8-sig")
    return [(i + 2, row) for i, row in enumerate(csv.DictReader(io.StringIO(text, newline="")))]


def expected_holdings(path: Path, powerschool: dict[str, Any], skip: Collection[tuple[str, int]] = (),
                      ) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str, int], dict[str, Any]]]:
    """(assignments by (name, section), scores by (name, section, student dcid)) PowerTeacher Pro must hold.

    Seed 000's requirements by hand: a title of 30 characters at most, points possible, a due
    date within the class's term, a category that is one of the section teacher's active
    categories. Then its transfer tables: a score passes as points (late as late), exempt
    passes as Exempt with no points, not submitted / missing / ungraded pass nothing.
    """
    def rows(name: str) -> list[dict[str, str]]:
        return [r for line, r in csv_rows(path, name) if (name, line) not in skip and r.get("status") != "tobedeleted"]

    version = {r["propertyName"]: r["value"] for _, r in csv_rows(path, "manifest.csv")}["oneroster.version"]
    terms = {t["sourcedId"]: t for t in rows("academicSessions.csv")}
    classes = {c["sourcedId"]: c for c in rows("classes.csv")}
    users = {u["sourcedId"]: u for u in rows("users.csv")}
    categories = {c["sourcedId"] for c in rows("categories.csv")}
    enrolled = {(e["classSourcedId"], e["userSourcedId"]) for e in rows("enrollments.csv") if e["role"] == "student"}
    dcid_by_number = {str(s["local_id"]): s["id"] for s in powerschool["students"].values()}
    results = rows("results.csv")
    assignments: dict[tuple[str, str], dict[str, Any]] = {}
    scores: dict[tuple[str, str, int], dict[str, Any]] = {}
    for item in rows("lineItems.csv"):
        klass = classes.get(item["classSourcedId"])
        if klass is None or not item["title"] or len(item["title"]) > TITLE_LIMIT or not item["resultValueMax"]:
            continue
        term = terms[klass["termSourcedIds"]]
        due = item["dueDate"][:10]
        if not due or not date.fromisoformat(term["startDate"]) <= date.fromisoformat(due) <= \
                date.fromisoformat(term["endDate"]):
            continue
        staff = powerschool["sections"][klass["sourcedId"]]["staff_id"]
        category = powerschool["categories"].get(item["categorySourcedId"])
        if item["categorySourcedId"] not in categories or category is None or category["usersdcid"] != staff \
                or not category["isactive"]:
            continue
        key = (item["title"], klass["sourcedId"])
        assignments[key] = {"duedate": due, "points": float(item["resultValueMax"]),
                            "category": int(item["categorySourcedId"])}
        for result in results:
            student = result["studentSourcedId"]
            if result["lineItemSourcedId"] != item["sourcedId"] or (klass["sourcedId"], student) not in enrolled \
                    or student not in users:
                continue
            dcid = dcid_by_number[users[student]["identifier"] or student]
            status, late = result["scoreStatus"], version == "1.2" and result["late"] == "true"
            if status == "exempt":
                scores[(*key, dcid)] = {"scorepoints": None, "islate": False, "isexempt": True}
            elif version == "1.2" and result["missing"] == "true":
                continue  # Missing: does not pass, displays as blank
            elif status in ("fully graded", "partially graded", "submitted") and result["score"]:
                scores[(*key, dcid)] = {"scorepoints": float(result["score"]), "islate": late, "isexempt": False}
            # not submitted (missing in 1.1) and submitted-ungraded: nothing to send
    return assignments, scores


def held_assignments(powerschool: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["name"], str(s["sectionsdcid"])): {
        "duedate": s["duedate"], "points": s["scoreentrypoints"],
        "category": s["_assignmentcategoryassociations"][0]["teachercategoryid"]}
        for a in powerschool["assignments"].values() for s in a["_assignmentsections"]}


def write_bundle(sis: Sis, tmp_path: Path, version: str, bad_rows: bool = False) -> tuple[Path, Bundle]:
    bundle = build_bundle(sis.canvas, sis.state, version, bad_rows)
    return bundle.write(tmp_path / "export.zip"), bundle


# --- the runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_bundle_lands_in_powerteacher_pro_exactly_and_a_second_sync_sends_nothing(
        env: tuple[Store, Settings], sis: Sis, tmp_path: Path, version: str) -> None:
    store, settings = env
    path, _ = write_bundle(sis, tmp_path, version)
    connect(store, settings, sis, path)

    first = sync_all(store, settings)
    broken = {c["sourcedId"] for _, c in csv_rows(path, "classes.csv") if c["courseSourcedId"] == "PS-COURSE-1"}
    assert sorted(r.status for r in first) == ["completed_with_errors"] * len(broken) + \
        ["succeeded"] * (len(first) - len(broken))  # the broken course's classes, and only they
    expected_assignments, expected_scores = expected_holdings(path, sis.state)
    assert len(expected_assignments) > 20 and len(expected_scores) > 100
    assert held_assignments(sis.state) == expected_assignments
    assert held_destination_scores(sis.state) == expected_scores
    assert any(s["islate"] for s in expected_scores.values()) is (version == "1.2")  # 1.1 has no late flag
    assert any(s["isexempt"] for s in expected_scores.values())
    errors = [i for r in first for i in get_run_items(store, r.run_id or "", ("error",))]
    assert {i["code"] for i in errors} == {"name-over-destination-limit", "points-possible-none",
                                           "category-not-valid-for-section"}  # the broken course, in seed words
    skipped = [i for r in first for i in get_run_items(store, r.run_id or "", ("skipped",))]
    assert {i["code"] for i in skipped} <= {"missing-not-sent", "student-not-graded"}
    assert not [i for i in errors + skipped if "Canvas" in (i["message"] or "")]  # the export's words, not Canvas's

    before = len(changes(sis.powerschool.writes))
    second = sync_all(store, settings)
    assert total(second, "created") == total(second, "updated") == total(second, "deleted") == 0
    assert len(changes(sis.powerschool.writes)) == before  # nothing sent


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_bad_rows_are_errors_naming_file_and_line_and_every_good_row_is_sent(
        env: tuple[Store, Settings], sis: Sis, tmp_path: Path, version: str) -> None:
    store, settings = env
    path, bundle = write_bundle(sis, tmp_path, version, bad_rows=True)
    connect(store, settings, sis, path)

    first = sync_all(store, settings)
    assert all(r.status == "completed_with_errors" and r.failure is None for r in first)  # each run finishes
    rows = [i for r in first for i in get_run_items(store, r.run_id or "", ("error",))
            if i["code"] == "source-row-unreadable"]
    for planted in bundle.planted:
        said = [i for i in rows if i["message"].startswith(f"{planted.file} line {planted.line}: ")]
        assert said, (planted, [i["message"] for i in rows])
        assert all(i["context"]["fix"] and i["object_kind"] == "source_row" for i in said)
    assert {i["message"].split(":")[0] for i in rows} == {f"{p.file} line {p.line}" for p in bundle.planted}
    assert all(r.problems for r in first)  # the run says them too (the CLI prints them)

    skip = {(p.file, p.line) for p in bundle.planted}
    expected_assignments, expected_scores = expected_holdings(path, sis.state, skip)
    assert held_assignments(sis.state) == expected_assignments  # every good row sent, no bad one
    assert held_destination_scores(sis.state) == expected_scores

    before = len(changes(sis.powerschool.writes))
    second = sync_all(store, settings)
    assert total(second, "created") == total(second, "updated") == total(second, "deleted") == 0
    assert len(changes(sis.powerschool.writes)) == before
    again = [i for r in second for i in get_run_items(store, r.run_id or "", ("error",))
             if i["code"] == "source-row-unreadable"]
    assert sorted(i["message"] for i in again) == sorted(i["message"] for i in rows)  # still told, every run


def test_a_row_gone_bad_after_a_sync_neither_deletes_nor_clears_what_was_sent(
        env: tuple[Store, Settings], sis: Sis, tmp_path: Path) -> None:
    store, settings = env
    path, _ = write_bundle(sis, tmp_path, "1.2")
    connect(store, settings, sis, path)
    sync_all(store, settings)
    held_before = held_destination_scores(sis.state)
    assignments_before = held_assignments(sis.state)

    _, bundle = write_bundle(sis, tmp_path, "1.2", bad_rows=True)  # the same export, with rows gone bad
    withheld = next(p for p in bundle.planted if p.kind == "points-not-a-number")
    item = dict(csv_rows(path, "lineItems.csv"))[withheld.line]
    assert (item["title"], item["classSourcedId"]) in assignments_before  # it was sent while it read well
    writes_before = len(sis.powerschool.writes)
    results = sync_all(store, settings)
    assert total(results, "deleted") == 0 and not assignment_changes(sis.powerschool.writes[writes_before:], "DELETE")
    assert held_assignments(sis.state) == assignments_before  # the lineItem whose points went bad is still there
    cleared = [(asid, student) for asid, student, row in score_rows(sis.powerschool.writes[writes_before:])
               if row.get("scorepoints") is None and not row.get("isexempt")]
    assert not cleared  # the results that went bad were withheld, not read as blank
    assert held_destination_scores(sis.state) == held_before
    told = [i for r in results for i in get_run_items(store, r.run_id or "", ("error",))
            if i["code"] == "source-row-unreadable" and i["source_id"].endswith(f":{withheld.source_id}")]
    assert told and "resultValueMax 'ten' is not a number" in told[0]["message"]


def test_a_dry_run_counts_the_bad_rows_as_errors_and_writes_nothing(
        env: tuple[Store, Settings], sis: Sis, tmp_path: Path) -> None:
    store, settings = env
    path, bundle = write_bundle(sis, tmp_path, "1.1", bad_rows=True)
    connect(store, settings, sis, path)
    broken = next(p for p in bundle.planted if p.kind == "points-not-a-number")
    klass = dict(csv_rows(path, "lineItems.csv"))[broken.line]["classSourcedId"]

    preview = asyncio.run(sync_courses(store, settings, ROUTE, [Scope(course_id=klass)], dry_run=True))[0]
    assert preview.status == "dry_run" and not changes(sis.powerschool.writes)
    assert f"lineItems.csv line {broken.line}: resultValueMax 'ten' is not a number" in preview.problems
    orphan = next(p for p in bundle.planted if p.kind == "unknown-class")
    assert any(p.startswith(f"lineItems.csv line {orphan.line}: ") for p in preview.problems)
    assert preview.counts["error"] >= len(preview.problems)  # counted as the real run will record them
