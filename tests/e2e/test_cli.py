"""The CLI as a district's integration engineer runs it: real processes, real sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest


def passback(data_dir: Path, *args: str, check: bool = True, codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PASSBACK_DATA_DIR": str(data_dir)}
    env.pop("PASSBACK_DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "passback.cli", *args], env=env, text=True,
                            capture_output=True, timeout=300)
    if check and result.returncode not in codes:
        raise AssertionError(f"passback {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture
def data_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield tmp_path
    passback(tmp_path, "sandbox", "down", check=False)


def test_demo_twice_writes_nothing_the_second_time(data_dir: Path) -> None:
    shape = ["--courses", "2", "--students", "8", "--assignments", "6"]
    first = json.loads(passback(data_dir, "demo", "--json", *shape, codes=(2,)).stdout)  # broken on purpose
    assert first["counts"]["created"] > 0 and first["counts"]["error"] >= 2
    assert first["requests"]["canvas"] > 0 and first["requests"]["powerschool"] > 0
    second = json.loads(passback(data_dir, "demo", "--json", *shape, codes=(2,)).stdout)
    assert second["counts"]["created"] == 0 and second["counts"]["updated"] == 0
    assert second["counts"]["unchanged"] == first["counts"]["created"]

    run_with_errors = next(r["run_id"] for r in first["runs"] if r["counts"]["error"])
    shown = json.loads(passback(data_dir, "runs", "show", run_with_errors[:8], "--json").stdout)
    errors = {i["code"]: i for i in shown["items"] if i["outcome"] == "error"}
    assert errors["name-over-destination-limit"]["seed_error"] == 9
    assert errors["points-possible-none"]["seed_error"] == 5
    assert errors["points-possible-none"]["message"] == "Score entry points is required"
    assert errors["points-possible-none"]["fix"] == 'Change assignment(s) in Canvas to be out of 0 points instead of "none".'
    assert errors["name-over-destination-limit"]["link"].endswith(
        f"/assignments/{errors['name-over-destination-limit']['context']['assignment_id']}")
    text = passback(data_dir, "runs", "show", run_with_errors[:8]).stdout
    assert "meaning:" in text and "fix:" in text and "Score entry points is required" in text

    history = json.loads(passback(data_dir, "runs", "--json").stdout)
    assert len(history) == 4


def test_sync_scopes_dry_run_and_reset(data_dir: Path) -> None:
    passback(data_dir, "sandbox", "up", "--courses", "1", "--students", "5", "--assignments", "4")
    courses = json.loads(passback(data_dir, "sync", "--all", "--dry-run", "--json", codes=(2,)).stdout)  # items would error
    plan = courses["runs"][0]
    assert plan["status"] == "dry_run" and plan["run_id"] is None
    assert {s["action"] for s in plan["plan"]} >= {"create", "error", "skip"}
    assert json.loads(passback(data_dir, "runs", "--json").stdout) == []  # a dry run records nothing
    course = "101"
    assignment = next(s["assignment_id"] for s in plan["plan"] if s["action"] == "create")
    one = json.loads(passback(data_dir, "sync", "--course", course, "--assignment", assignment, "--json").stdout)
    assert one["counts"]["created"] == 1 + plan["plan"][
        [s["assignment_id"] for s in plan["plan"]].index(assignment)]["scores"]["create"]
    passback(data_dir, "sandbox", "down")
    passback(data_dir, "sandbox", "reset", "--courses", "1", "--students", "5", "--assignments", "4")
    passback(data_dir, "sandbox", "up")
    again = json.loads(passback(data_dir, "sync", "--course", course, "--json", codes=(2,)).stdout)
    assert again["counts"]["created"] > 0  # a fresh district: nothing is believed written any more


def test_errors_catalogue_and_bad_input(data_dir: Path) -> None:
    catalogue = json.loads(passback(data_dir, "errors", "--json").stdout)
    assert {e["seed_error"] for e in catalogue if e["seed_error"]} >= {1, 2, 3, 4, 5, 6, 7, 8, 9}
    missing = passback(data_dir, "sync", "--course", "1", "--source", "nope", check=False)
    assert missing.returncode == 1 and "No connection named 'nope'" in missing.stderr
    no_scope = passback(data_dir, "sync", check=False)
    assert no_scope.returncode == 1 and "--course" in no_scope.stderr
    env = {**os.environ, "PASSBACK_DATA_DIR": str(data_dir),
           "PASSBACK_DATABASE_URL": "postgresql://someone:hunter2@127.0.0.1:1/nowhere"}
    down = subprocess.run([sys.executable, "-m", "passback", "runs"], env=env, text=True, capture_output=True,
                          timeout=60)
    assert down.returncode == 1 and "Cannot open the store at postgresql://someone:***@127.0.0.1:1/nowhere" in down.stderr
    assert "hunter2" not in down.stderr + down.stdout and "Traceback" not in down.stderr


def test_check_then_fix_makes_the_course_ready(data_dir: Path) -> None:
    passback(data_dir, "sandbox", "up", "--courses", "1", "--students", "4", "--assignments", "4")
    before = json.loads(passback(data_dir, "check", "--course", "101", "--json").stdout)
    blocked = {a["name"]: a for a in before["assignments"] if a["status"] == "blocked"}
    assert set(blocked) == {"Unit 3 Lab Report: Measuring the Speed of Sound in Air", "Reading Log", "Bonus Puzzle"}
    assert all(a["findings"][0]["fix"] for a in blocked.values())
    assert len(before["fixes"]) == 3
    refused = passback(data_dir, "fix", "--course", "101", "--json", check=False)
    assert refused.returncode == 1  # a script must say --yes: it could not run as asked
    fixed = json.loads(passback(data_dir, "fix", "--course", "101", "--yes", "--json").stdout)
    assert len(fixed["applied"]) == 3
    after = json.loads(passback(data_dir, "check", "--course", "101", "--json").stdout)
    assert not [a for a in after["assignments"] if a["status"] == "blocked"]
    assert after["ready"] == before["ready"] + 2  # renamed and re-pointed; the bonus puzzle is switched off


def test_the_sandbox_serves_every_system_and_the_readme_state_reporting_commands_work(data_dir: Path) -> None:
    up = json.loads(passback(data_dir, "sandbox", "up", "--systems", "canvas,powerschool,schoology,edfi",
                             "--courses", "1", "--students", "4", "--assignments", "3", "--json").stdout)
    assert {"canvas", "powerschool", "schoology", "edfi"} <= set(up) and Path(up["sample_export"]).is_file()
    assert up["connections"] == {"sandbox-canvas": "canvas", "sandbox-powerteacher": "powerschool",
                                 "sandbox-schoology": "schoology", "state-edfi": "edfi", "sis-export": "csv"}
    dry = json.loads(passback(data_dir, "edfi", "sync", "--dry-run", "--json").stdout)
    assert dry["run_id"] is None and dry["counts"]["created"] > 0
    sent = json.loads(passback(data_dir, "edfi", "sync", "--json").stdout)
    assert sent["counts"]["created"] == dry["counts"]["created"] and sent["counts"]["error"] == 0
    state = json.loads(httpx.get(f"{up['edfi']}/_emulator/state", timeout=30).text)
    assert len(state["resources"]["grades"]) == sent["counts"]["created"]  # the records are in the ODS
    again = passback(data_dir, "edfi", "sync", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["counts"]["created"] == 0

    section = next(iter(json.loads(httpx.get(f"{up['schoology']}/_emulator/state", timeout=30).text)["sections"]))
    synced = passback(data_dir, "sync", "--course", section, "--source", "sandbox-schoology", "--json", codes=(0, 2))
    assert json.loads(synced.stdout)["runs"][0]["status"] in ("succeeded", "completed_with_errors")
