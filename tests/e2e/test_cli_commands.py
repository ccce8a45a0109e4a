"""The setup, history and state-reporting commands as an operator types them: real processes
against the emulators on loopback; each change checked in the emulator's own state, each
mistake answered with exit code 1 and a line naming what was wrong, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import District

LMS, SIS = "lms", "sis"
ROUTE = ("--source", LMS, "--destination", SIS)
COURSE = "101"  # Algebra I in the small district: groups 128-131 carry PowerSchool ids, 132 does not
UNMAPPED_GROUP, HOMEWORK, INACTIVE = "132", "5002", "5006"


def passback(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PASSBACK_DATA_DIR": str(data_dir)}
    environment.pop("PASSBACK_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "passback", *args], env=environment, text=True,
                          capture_output=True, timeout=120, check=False)


def ok(data_dir: Path, *args: str) -> str:
    done = passback(data_dir, *args)
    assert done.returncode == 0, f"passback {' '.join(args)} -> {done.returncode}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def refused(data_dir: Path, *args: str, code: int = 1) -> str:
    """The command could not run as asked: the exit code, one message, no traceback; the message."""
    done = passback(data_dir, *args)
    assert done.returncode == code, f"passback {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr
    return " ".join(done.stderr.split())  # rich wraps long lines at 120 columns


@pytest.fixture
def connected(tmp_path: Path, district: District) -> Path:
    creds = district.credentials
    ok(tmp_path, "connect", "canvas", "--name", LMS, "--url", district.canvas.url, "--token", creds.canvas_token)
    ok(tmp_path, "connect", "powerschool", "--name", SIS, "--url", district.powerschool.url,
       "--client-id", creds.powerschool_client_id, "--client-secret", creds.powerschool_client_secret)
    return tmp_path


def _row(report: dict[str, Any], group: str) -> dict[str, Any]:
    return next(r for r in report["categories"] if r["source_category_id"] == group)


def test_categories_list_map_unmap_and_import(connected: Path, district: District) -> None:
    listed = json.loads(ok(connected, "categories", "list", "--course", COURSE, *ROUTE, "--json"))
    assert _row(listed, UNMAPPED_GROUP)["destination_category_id"] is None
    assert [p["problem"] for p in listed["problems"] if p["source_category_id"] == UNMAPPED_GROUP] == [
        "not mapped and not imported"]
    assert _row(listed, "128")["destination_category_id"] == HOMEWORK  # by the group's PowerSchool id
    assert INACTIVE not in {c["id"] for c in listed["destination_categories"]}

    said = ok(connected, "categories", "map", "--course", COURSE, "--category", UNMAPPED_GROUP, "--to", HOMEWORK, *ROUTE)
    assert "Mapped Extra Practice -> Homework" in said
    mapped = json.loads(ok(connected, "categories", "list", "--course", COURSE, *ROUTE, "--json"))
    assert _row(mapped, UNMAPPED_GROUP)["destination_category_id"] == HOMEWORK
    assert not [p for p in mapped["problems"] if p["source_category_id"] == UNMAPPED_GROUP]
    table = ok(connected, "categories", "list", "--course", COURSE, *ROUTE)
    assert "Extra Practice" in table and f"{HOMEWORK} Homework" in table

    unknown = refused(connected, "categories", "map", "--course", COURSE, "--category", "999999", "--to", HOMEWORK,
                      *ROUTE)
    assert f"Course {COURSE} has no category 999999" in unknown
    inactive = refused(connected, "categories", "map", "--course", COURSE, "--category", UNMAPPED_GROUP,
                       "--to", INACTIVE, *ROUTE)
    assert f"Destination category {INACTIVE} is not an active category" in inactive

    assert "Removed." in ok(connected, "categories", "unmap", "--course", COURSE, "--category", UNMAPPED_GROUP, *ROUTE)
    again = ok(connected, "categories", "unmap", "--course", COURSE, "--category", UNMAPPED_GROUP, *ROUTE)
    assert "There was no such mapping." in again

    groups_before = dict(district.canvas.state["assignment_groups"])
    imported = json.loads(ok(connected, "categories", "import", "--course", COURSE, *ROUTE, "--json"))
    created = [r for r in imported if r["status"] == "imported"]
    new_groups = {k: v for k, v in district.canvas.state["assignment_groups"].items() if k not in groups_before}
    assert sorted(g["name"] for g in new_groups.values()) == sorted(r["category"] for r in created)
    assert {r["category"] for r in imported} == {c["name"] for c in listed["destination_categories"]}
    text = ok(connected, "categories", "import", "--course", COURSE, *ROUTE)  # the second time: all present
    assert "imported" not in text and "present" in text
    assert len(district.canvas.state["assignment_groups"]) == len(groups_before) + len(created)



def _assignments(district: District, course: str) -> list[dict[str, Any]]:
    return sorted((a for a in district.canvas.state["assignments"].values() if str(a["course_id"]) == course),
                  key=lambda a: a["id"])


def test_switch_link_unlink_and_the_run_history(connected: Path, district: District) -> None:
    first, second = (str(a["id"]) for a in _assignments(district, COURSE)[:2])
    said = ok(connected, "switch", "off", "--course", COURSE, "--assignment", first, *ROUTE)
    assert f"Sync is off for assignment {first} (kept in the source)" in " ".join(said.split())
    assert district.canvas.state["assignments"][first]["post_to_sis"] is False
    ok(connected, "switch", "on", "--course", COURSE, "--assignment", first, *ROUTE)
    assert district.canvas.state["assignments"][first]["post_to_sis"] is True
    assert "say on or off" in refused(connected, "switch", "maybe", "--course", COURSE, "--assignment", first, *ROUTE)
    assert district.canvas.state["assignments"][first]["post_to_sis"] is True
    nothing = refused(connected, "switch", "off", "--course", COURSE, "--assignment", "999999", *ROUTE)
    assert "999999" in nothing

    synced = json.loads(passback(connected, "sync", "--course", COURSE, "--assignment", first, *ROUTE, "--json").stdout)
    run_id = synced["runs"][0]["run_id"]
    assert len(district.powerschool.state["assignments"]) == 1  # the one assignment synced
    dest_id = next(iter(district.powerschool.state["assignments"]))

    no_assignment = refused(connected, "link", "--course", COURSE, "--assignment", "999999", "--to", dest_id, *ROUTE)
    assert f"Course {COURSE} has no assignment 999999" in no_assignment
    no_dest = refused(connected, "link", "--course", COURSE, "--assignment", second, "--to", "888888", *ROUTE)
    assert "The destination has no assignment 888888" in no_dest
    taken = refused(connected, "link", "--course", COURSE, "--assignment", second, "--to", dest_id, *ROUTE)
    assert f"Destination assignment {dest_id} is already linked to" in taken

    assert "Unlinked." in ok(connected, "unlink", "--course", COURSE, "--assignment", first, *ROUTE)
    assert "The assignment had no link." in ok(connected, "unlink", "--course", COURSE, "--assignment", first, *ROUTE)
    linked = ok(connected, "link", "--course", COURSE, "--assignment", second, "--to", dest_id, *ROUTE)
    assert f"Linked assignment {second} to destination assignment {dest_id}" in " ".join(linked.split())
    writes_before = len(district.powerschool.state["assignments"])
    again = json.loads(passback(connected, "sync", "--course", COURSE, "--assignment", second, *ROUTE, "--json").stdout)
    assert len(district.powerschool.state["assignments"]) == writes_before  # sent to the linked one, none made

    history = json.loads(ok(connected, "runs", "--json"))
    assert [r["id"] for r in history][-1] == run_id and len(history) == 2
    table = ok(connected, "runs")
    assert run_id[:8] in table and again["runs"][0]["run_id"][:8] in table
    shown = json.loads(ok(connected, "runs", "show", run_id[:8], "--all", "--json"))
    assert shown["run"]["id"] == run_id
    assert len(shown["items"]) == sum(shown["run"]["counts"].values())
    only_errors = json.loads(ok(connected, "runs", "show", run_id, "--json"))
    assert {i["outcome"] for i in only_errors["items"]} <= {"error", "skipped"}
    text = ok(connected, "runs", "show", run_id[:8], "--all")
    assert f"Run {run_id}" in text
    unknown_run = refused(connected, "runs", "show", "zzzzzzzz")
    assert "zzzzzzzz" in unknown_run


def test_match_list_and_the_error_catalogue(connected: Path) -> None:
    report = json.loads(ok(connected, "match", "list", *ROUTE, "--json"))
    assert {r["kind"] for r in report["rules"]} == {"section", "student", "category"}
    assert not any(r["set"] for r in report["rules"]) and report["overrides"] == []
    ok(connected, "match", "rule", "student", "--source-field", "id", "--dest-field", "id", *ROUTE)
    report = json.loads(ok(connected, "match", "list", *ROUTE, "--json"))
    assert [r["kind"] for r in report["rules"] if r["set"]] == ["student"]
    text = ok(connected, "match", "list", *ROUTE)
    assert text.count("rule     ") == 1 and text.count("default  ") == 2
    assert "There was no such override." in ok(connected, "match", "remove", "student", "--source-student", "1",
                                               *ROUTE)
    bad_kind = refused(connected, "match", "rule", "teacher", *ROUTE)
    assert "teacher" in bad_kind

    catalogue = json.loads(ok(connected, "errors", "--json"))
    table = ok(connected, "errors")
    for row in catalogue:
        assert row["code"] in table or row["code"][:20] in table
    nobody = refused(connected, "match", "list", "--source", "nope", "--destination", SIS)
    assert "No connection named 'nope'" in nobody


@pytest.fixture
def edfi(tmp_path: Path) -> Iterator[Path]:
    up = passback(tmp_path, "sandbox", "up", "--systems", "edfi", "--courses", "1", "--students", "3",
                  "--assignments", "2", "--json")
    try:
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["connections"] == {"state-edfi": "edfi", "sis-export": "csv"}
        yield tmp_path
    finally:
        passback(tmp_path, "sandbox", "down")


FINAL = "uri://ed-fi.org/GradeTypeDescriptor#Final"
S2 = "uri://ed-fi.org/GradingPeriodDescriptor#Second Semester"


def test_edfi_mappings_toggle_and_status(edfi: Path) -> None:
    status = json.loads(ok(edfi, "edfi", "status", "--json"))
    assert status["enabled"] is True and status["mappings_changed"] is False
    assert "S1 Final" in status["mappings"]["final_tasks"]
    assert ok(edfi, "edfi", "status").strip()

    assert "say on or off" in refused(edfi, "edfi", "toggle", "sideways")
    off = json.loads(ok(edfi, "edfi", "toggle", "off", "--json"))
    assert off["enabled"] is False and off["was"] is True
    assert json.loads(ok(edfi, "edfi", "status", "--json"))["enabled"] is False
    assert "already off" in ok(edfi, "edfi", "toggle", "off")
    assert json.loads(ok(edfi, "edfi", "toggle", "on", "--json"))["was"] is False

    task = json.loads(ok(edfi, "edfi", "map", "task", "S2 Final", "--grade-type", FINAL, "--period", S2, "--json"))
    assert task["grade_types"]["S2 Final"] == FINAL and task["grading_periods"]["S2 Final"] == [S2]
    assert task["tasks"]["S2 Final"] == {"final": True, "state_reported": True}
    bad = refused(edfi, "edfi", "map", "task", "S3", "--grade-type", "Final", "--period", S2)
    assert "'Final' is not a descriptor URI" in bad
    grade = json.loads(ok(edfi, "edfi", "map", "grade", "e", "--code", "0", "--json"))
    assert grade["state_codes"]["E"] == 0 and grade["state_codes"]["A"] == 4
    assert json.loads(ok(edfi, "edfi", "map", "year", "2028", "2027", "2028", "--json"))["school_years"] == [2027, 2028]
    subject = json.loads(ok(edfi, "edfi", "map", "subject", "02", "--descriptor",
                            "uri://state.org/AcademicSubjectDescriptor#Math", "--json"))
    assert list(subject["subject_descriptors"].values()) == ["uri://state.org/AcademicSubjectDescriptor#Math"]
    assert "is not a SCED subject area code" in refused(edfi, "edfi", "map", "subject", "math", "--descriptor",
                                                        "uri://state.org/AcademicSubjectDescriptor#Math")
    assert "not a descriptor URI" in refused(edfi, "edfi", "map", "subject", "02", "--descriptor", "Math")
    said = ok(edfi, "edfi", "map", "remove", "S2 Final")
    assert "Saved." in said
    shown = json.loads(ok(edfi, "edfi", "status", "--json"))
    assert "S2 Final" not in shown["mappings"]["final_tasks"]
    assert "Grading task 'S2 Final' is not mapped" in refused(edfi, "edfi", "map", "remove", "S2 Final")
    not_edfi = refused(edfi, "edfi", "map", "grade", "A", "--code", "4", "--destination", "sis-export")
    assert "Connection 'sis-export' is not an Ed-Fi connection" in not_edfi


def test_db_upgrade_and_sandbox_down_when_not_running(tmp_path: Path) -> None:
    assert "The store is at this version's schema." in ok(tmp_path, "db", "upgrade")
    assert (tmp_path / "passback.db").is_file()
    assert "The sandbox was not running." in ok(tmp_path, "sandbox", "down")
