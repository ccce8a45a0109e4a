"""`passback users` as a district's IT person runs it: real processes on a data directory of their own.

Exit codes: 0 done, 1 refused (a username taken, a short password, an unknown user,
course or connection). No password or hash is ever printed; a token is printed once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from passback.services import accounts
from passback.settings import Settings
from passback.store import open_store

PASSWORD = "a long enough passphrase"


def passback(data_dir: Path, *args: str, env: dict[str, str] | None = None,
             stdin: str = "") -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PASSBACK_DATA_DIR": str(data_dir), **(env or {})}
    environment.pop("PASSBACK_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "passback.cli", *args], env=environment, text=True, input=stdin,
                          capture_output=True, timeout=120, check=False)


def _never_shown(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in (*secrets, "$argon2", "password_hash"):
        assert secret not in result.stdout and secret not in result.stderr


def test_add_list_and_the_refusals(tmp_path: Path) -> None:
    added = passback(tmp_path, "users", "add", "admin", "--admin", "--name", "District Admin",
                     "--password-env", "ADMIN_PASSWORD", env={"ADMIN_PASSWORD": PASSWORD})
    assert added.returncode == 0, added.stderr
    assert "Added user admin (admin)." in added.stdout
    _never_shown(added, PASSWORD)

    prompted = passback(tmp_path, "users", "add", "ms.rivera", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.returncode == 0, prompted.stderr
    assert "Added user ms.rivera." in prompted.stdout and "Password" in prompted.stderr
    _never_shown(prompted, PASSWORD)

    taken = passback(tmp_path, "users", "add", "admin", "--password-env", "P", env={"P": PASSWORD})
    assert taken.returncode == 1 and "'admin' exists already" in taken.stderr
    short = passback(tmp_path, "users", "add", "coach", "--password-env", "P", env={"P": "short"})
    assert short.returncode == 1 and "at least 12" in short.stderr
    _never_shown(short, "short")
    unset = passback(tmp_path, "users", "add", "coach", "--password-env", "NOT_SET_ANYWHERE")
    assert unset.returncode == 1 and "NOT_SET_ANYWHERE" in unset.stderr
    mismatch = passback(tmp_path, "users", "add", "coach", stdin=f"{PASSWORD}\n{PASSWORD}!\n")  # then no more input
    assert mismatch.returncode == 1

    listed = passback(tmp_path, "users", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["username"], r["display_name"], r["is_admin"], r["has_password"]) for r in rows] == [
        ("admin", "District Admin", True, True), ("ms.rivera", "ms.rivera", False, True)]
    assert all("password_hash" not in r for r in rows)
    _never_shown(listed, PASSWORD)
    table = passback(tmp_path, "users", "list")
    assert table.returncode == 0 and "District Admin" in table.stdout and "ms.rivera" in table.stdout

    store = open_store(Settings(data_dir=tmp_path))
    try:  # the password the prompt was given is the one that signs in
        assert accounts.authenticate(store, "ms.rivera", PASSWORD) is not None
        assert accounts.get_user_by_username(store, "coach") is None
    finally:
        store.dispose()


def test_a_token_is_printed_once_and_works(tmp_path: Path) -> None:
    assert passback(tmp_path, "users", "add", "scripts", "--password-env", "P", env={"P": PASSWORD}).returncode == 0
    issued = passback(tmp_path, "users", "token", "scripts", "--name", "nightly-export")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.startswith("pb_") and issued.stdout == token + "\n"  # the token alone: TOKEN=$(passback users token ...)
    assert "shown only now" in issued.stderr

    store = open_store(Settings(data_dir=tmp_path))
    try:
        user = accounts.user_for_token(store, token)
        assert user is not None and user["username"] == "scripts"
        assert [t["name"] for t in accounts.list_tokens(store, user["id"])] == ["nightly-export"]
    finally:
        store.dispose()
    listed = passback(tmp_path, "users", "list", "--json")
    _never_shown(listed, token)

    unknown = passback(tmp_path, "users", "token", "nobody", "--name", "x")
    assert unknown.returncode == 1 and "No user 'nobody'" in unknown.stderr and not unknown.stdout


def test_grant_a_course(tmp_path: Path) -> None:
    assert passback(tmp_path, "users", "add", "ms.rivera", "--password-env", "P", env={"P": PASSWORD}).returncode == 0
    connected = passback(tmp_path, "connect", "canvas", "--name", "lms", "--url", "https://lms.example.edu",
                         "--token-env", "CANVAS_TOKEN", "--no-check", env={"CANVAS_TOKEN": "canvas-token"})
    assert connected.returncode == 0, connected.stderr

    granted = passback(tmp_path, "users", "grant", "ms.rivera", "--course", "101", "--source", "lms")
    assert granted.returncode == 0, granted.stderr
    assert "may now see course 101 of lms as Instructor" in granted.stdout
    as_ta = passback(tmp_path, "users", "grant", "ms.rivera", "--course", "102", "--source", "lms", "--role",
                     "TeachingAssistant", "--json")
    assert as_ta.returncode == 0 and json.loads(as_ta.stdout)["role"] == "TeachingAssistant"

    store = open_store(Settings(data_dir=tmp_path))
    try:
        user = accounts.require_user(store, "ms.rivera")
        lms = accounts.source_connection_id(store, "lms")
        assert [(c["course_id"], c["role"]) for c in accounts.courses_of(store, user["id"])] == [
            ("101", "Instructor"), ("102", "TeachingAssistant")]
        assert accounts.can_access(user, lms, "101", store) and not accounts.can_access(user, lms, "103", store)
    finally:
        store.dispose()

    for args, said in ((("nobody", "--course", "101", "--source", "lms"), "No user 'nobody'"),
                       (("ms.rivera", "--course", "101", "--source", "nowhere"), "No connection 'nowhere'"),
                       (("ms.rivera", "--course", "101", "--source", "lms", "--role", "Owner"), "Instructor, Teaching")):
        refused = passback(tmp_path, "users", "grant", *args)
        assert refused.returncode == 1 and said in refused.stderr, refused.stderr
