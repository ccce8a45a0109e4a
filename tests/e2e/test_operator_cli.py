"""The command line as an operator and a scheduler meet it: connections tried before they are
saved, secrets from the environment, --replace and remove, exit codes, owner-only files,
and no traceback from anything a person gives. Real processes against real emulators."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import District, free_port


def passback(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PASSBACK_DATA_DIR": str(data_dir), **(env or {})}
    environment.pop("PASSBACK_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "passback", *args], env=environment, text=True,
                          capture_output=True, timeout=120, check=False)


def names(data_dir: Path) -> list[str]:
    listed = passback(data_dir, "connections", "--json")
    assert listed.returncode == 0, listed.stderr
    return [c["name"] for c in json.loads(listed.stdout)]


def test_connect_tries_the_credentials_before_saving(tmp_path: Path, district: District) -> None:
    canvas, token = district.canvas.url, district.credentials.canvas_token
    wrong = passback(tmp_path, "connect", "canvas", "--name", "lms", "--url", canvas, "--token", "not-the-token")
    assert wrong.returncode == 1 and f"Checking {canvas} failed" in wrong.stderr and "not saved" in wrong.stderr
    assert "Traceback" not in wrong.stderr and names(tmp_path) == []

    nobody = f"http://127.0.0.1:{free_port()}"
    down = passback(tmp_path, "connect", "powerschool", "--name", "sis", "--url", nobody, "--client-id", "x",
                    "--client-secret", "y")
    assert down.returncode == 1 and nobody in down.stderr and "Traceback" not in down.stderr
    assert "Check the client id and secret" not in down.stderr  # nobody answered: not a credentials problem

    refused = passback(tmp_path, "connect", "powerschool", "--name", "sis", "--url", district.powerschool.url,
                       "--client-id", district.credentials.powerschool_client_id, "--client-secret", "wrong")
    assert refused.returncode == 1 and "Check the client id and secret" in refused.stderr

    saved = passback(tmp_path, "connect", "canvas", "--name", "lms", "--url", canvas, "--token-env", "LMS_TOKEN",
                     env={"LMS_TOKEN": token})
    assert saved.returncode == 0 and "the token was accepted" in saved.stdout
    assert token not in saved.stdout + saved.stderr and names(tmp_path) == ["lms"]

    again = passback(tmp_path, "connect", "canvas", "--name", "lms", "--url", canvas, "--token", token)
    assert again.returncode == 1 and "--replace" in again.stderr
    unset = passback(tmp_path, "connect", "canvas", "--name", "lms", "--url", canvas, "--token-env", "NOT_SET_VAR",
                     "--replace")
    assert unset.returncode == 1 and "NOT_SET_VAR" in unset.stderr
    other_kind = passback(tmp_path, "connect", "powerschool", "--name", "lms", "--url", district.powerschool.url,
                          "--client-id", "a", "--client-secret", "b", "--replace", "--no-check")
    assert other_kind.returncode == 1 and "is a canvas connection" in other_kind.stderr
    replaced = passback(tmp_path, "connect", "canvas", "--name", "lms", "--url", canvas, "--token", token, "--replace")
    assert replaced.returncode == 0

    removed = passback(tmp_path, "connections", "remove", "lms")
    assert removed.returncode == 0 and names(tmp_path) == []
    gone = passback(tmp_path, "connections", "remove", "lms")
    assert gone.returncode == 1 and "No connection named 'lms'" in gone.stderr


def test_a_connection_with_history_is_kept_and_exit_codes_tell_a_scheduler(tmp_path: Path,
                                                                         district: District) -> None:
    creds = district.credentials
    assert passback(tmp_path, "connect", "canvas", "--name", "lms", "--url", district.canvas.url,
                    "--token", creds.canvas_token).returncode == 0
    assert passback(tmp_path, "connect", "powerschool", "--name", "sis", "--url", district.powerschool.url,
                    "--client-id", creds.powerschool_client_id, "--client-secret-env", "PS_SECRET",
                    env={"PS_SECRET": creds.powerschool_client_secret}).returncode == 0
    route = ("--source", "lms", "--destination", "sis")
    courses = sorted(district.canvas.state["courses"], key=int)
    clean = next(c for c in courses if not _has_broken_assignments(district, c))
    broken = next(c for c in courses if _has_broken_assignments(district, c))
    assert passback(tmp_path, "sync", "--course", clean, *route).returncode == 0  # every item sent
    assert passback(tmp_path, "sync", "--course", broken, *route).returncode == 2  # it ran; some items errored
    unknown = passback(tmp_path, "sync", "--course", clean, "--source", "nope", "--destination", "sis")
    assert unknown.returncode == 1 and "No connection named 'nope'" in unknown.stderr
    wrong_way = passback(tmp_path, "sync", "--course", clean, "--source", "sis", "--destination", "lms")
    assert wrong_way.returncode == 1 and "cannot serve as a source" in wrong_way.stderr
    assert "Traceback" not in wrong_way.stderr
    assert passback(tmp_path, "sync", "--bogus-flag").returncode == 1  # a bad command line: could not run

    kept = passback(tmp_path, "connections", "remove", "sis")
    assert kept.returncode == 1 and "run history" in kept.stderr and "sis" in names(tmp_path)

    runs = json.loads(passback(tmp_path, "runs", "--json").stdout)
    import getpass

    assert runs and {r["actor"] for r in runs} == {getpass.getuser()}  # who started each run: the OS user

    data = tmp_path
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "passback.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "secret.key").stat().st_mode) == 0o600

    version = passback(tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.startswith("passback ")


def _has_broken_assignments(district: District, course: str) -> bool:
    from tests.e2e.expected import TITLE_LIMIT

    for assignment in district.canvas.state["assignments"].values():
        if str(assignment["course_id"]) != course or not (assignment["published"] and assignment["post_to_sis"]):
            continue
        if assignment["points_possible"] is None or len(assignment["name"]) > TITLE_LIMIT:
            return True
    return False


def test_a_missing_key_file_or_a_damaged_store_is_said_plainly(tmp_path: Path, district: District) -> None:
    assert passback(tmp_path, "connect", "canvas", "--name", "lms", "--url", district.canvas.url,
                    "--token", district.credentials.canvas_token).returncode == 0
    key = tmp_path / "secret.key"
    saved_key = key.read_bytes()
    key.unlink()
    missing = passback(tmp_path, "sync", "--course", "1", "--source", "lms", "--destination", "lms")
    assert missing.returncode == 1 and str(key) in missing.stderr and "Restore it from your backup" in missing.stderr
    assert not key.exists()  # never a new key made in silence
    key.write_bytes(saved_key)

    store = tmp_path / "passback.db"
    store.write_bytes(b"this is not a database" * 100)
    damaged = passback(tmp_path, "runs")
    assert damaged.returncode == 1 and "damaged" in damaged.stderr and str(store) in damaged.stderr
    assert "Traceback" not in damaged.stderr


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASSBACK_DATABASE_URL", raising=False)


def test_a_dry_run_shows_each_grade_it_would_write(tmp_path: Path, district: District) -> None:
    creds = district.credentials
    assert passback(tmp_path, "connect", "canvas", "--name", "lms", "--url", district.canvas.url,
                    "--token", creds.canvas_token).returncode == 0
    assert passback(tmp_path, "connect", "powerschool", "--name", "sis", "--url", district.powerschool.url,
                    "--client-id", creds.powerschool_client_id, "--client-secret",
                    creds.powerschool_client_secret).returncode == 0
    course = next(c for c in sorted(district.canvas.state["courses"], key=int)
                  if not _has_broken_assignments(district, c))
    shown = passback(tmp_path, "sync", "--course", course, "--source", "lms", "--destination", "sis", "--dry-run",
                     "--details", "--json")
    assert shown.returncode == 0, shown.stderr
    plan = json.loads(shown.stdout)["runs"][0]["plan"]
    canvas = district.canvas.state
    graded = {(str(s["assignment_id"]), str(s["user_id"])): s for s in canvas["submissions"].values()}
    checked = 0
    for step in plan:
        for row in step["details"]:
            submission = graded[(step["assignment_id"], row["student_id"])]
            if row["action"] == "create" and not submission["excused"]:
                assert row["value"]["points"] == float(submission["score"])  # the Canvas score, as the seed sends it
                assert row["value"]["late"] == bool(submission["late"])
                checked += 1
    assert checked > 0
    assert district.powerschool.state["assignments"] == {}  # a dry run writes nothing
    table = passback(tmp_path, "sync", "--course", course, "--source", "lms", "--destination", "sis", "--dry-run",
                     "--details")
    assert table.returncode == 0 and "would write" in table.stdout
