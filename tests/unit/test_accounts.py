"""Accounts of the web product on both stores: passwords, LTI users, course access, API tokens.

What must hold: a password is at least 12 characters and stored only as an argon2 hash;
signing in costs the same whether or not the user exists; a disabled user gets in by
no door; a token is shown once and only its SHA-256 is kept; admins see every course,
everyone else the courses granted in a staff role; nothing secret is ever logged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from structlog.testing import capture_logs

from passback.errors import Conflict, Invalid, NotFound
from passback.services import accounts
from passback.settings import Settings
from passback.store import accounts as repo
from passback.store.connections import save_connection
from passback.store.db import Store
from passback.store.tables import api_tokens, users
from passback.vault import load_key

PASSWORD = "correct horse battery"


def _source(store: Store, tmp_path: Path, name: str = "lms") -> int:
    saved = save_connection(store, load_key(Settings(data_dir=tmp_path)), name=name, kind="canvas",
                            base_url="https://lms.example.edu", credentials={"token": "t"})
    return saved.id


def _no_secret_in(value: Any) -> None:
    shown = repr(value)
    assert "argon2" not in shown and "password_hash" not in shown and "token_hash" not in shown


def test_a_user_signs_in_with_the_password_and_with_nothing_else(store: Store) -> None:
    user = accounts.add_user(store, username="ms.rivera", display_name="Ana Rivera", password=PASSWORD)
    assert user["username"] == "ms.rivera" and user["display_name"] == "Ana Rivera" and not user["is_admin"]
    assert user["has_password"] and not user["disabled"]
    _no_secret_in(user)
    with store.engine.connect() as db:
        stored = db.execute(sa.select(users.c.password_hash).where(users.c.id == user["id"])).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored

    assert accounts.authenticate(store, "ms.rivera", PASSWORD) == user
    assert accounts.authenticate(store, "ms.rivera", PASSWORD + "!") is None
    assert accounts.authenticate(store, "nobody", PASSWORD) is None
    assert accounts.get_user(store, user["id"]) == user
    assert accounts.get_user(store, 999_999) is None
    assert [u["username"] for u in accounts.list_users(store)] == ["ms.rivera"]
    _no_secret_in(accounts.list_users(store))


def test_duplicates_short_passwords_and_odd_usernames_are_refused(store: Store) -> None:
    accounts.add_user(store, username="coach", password=PASSWORD)
    with pytest.raises(Conflict, match="'coach' exists already"):
        accounts.add_user(store, username="coach", password=PASSWORD)
    with pytest.raises(Invalid, match="11 characters long; it must be at least 12"):
        accounts.add_user(store, username="short", password="x" * 11)
    with pytest.raises(Invalid, match="without spaces"):
        accounts.add_user(store, username="two words", password=PASSWORD)
    with pytest.raises(Invalid, match="LTI launch"):
        accounts.add_user(store, username="lti:someone", password=PASSWORD)
    assert accounts.get_user_by_username(store, "short") is None
    no_password = accounts.add_user(store, username="robot", password=None)
    assert not no_password["has_password"] and accounts.authenticate(store, "robot", "") is None


def test_unknown_users_cost_a_hash_check_too(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer for an unknown user takes as long as for a known one: a hash is verified either way."""
    accounts.add_user(store, username="known", password=PASSWORD)
    checked: list[str] = []

    class Counting(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # argon2's own parameter names
            checked.append(str(hash))
            return super().verify(hash, password)

    monkeypatch.setattr(accounts, "_hasher", Counting())
    assert accounts.authenticate(store, "unknown", PASSWORD) is None
    assert accounts.authenticate(store, "known", "wrong password!") is None
    assert len(checked) == 2 and all(h.startswith("$argon2id$") for h in checked)
    assert checked[0] == accounts._dummy_hash()


def test_an_old_hash_is_replaced_when_its_owner_signs_in(store: Store) -> None:
    user = accounts.add_user(store, username="veteran", password=PASSWORD)
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    repo.update_user(store, user["id"], password_hash=weak)
    assert accounts.authenticate(store, "veteran", PASSWORD) is not None
    with store.engine.connect() as db:
        now = db.execute(sa.select(users.c.password_hash).where(users.c.id == user["id"])).scalar_one()
    assert now != weak and not PasswordHasher().check_needs_rehash(now)
    assert accounts.authenticate(store, "veteran", PASSWORD) is not None


def test_passwords_admins_and_disabled_users(store: Store) -> None:
    boss = accounts.add_user(store, username="boss", password=PASSWORD, is_admin=True)
    teacher = accounts.add_user(store, username="teacher", password=PASSWORD)

    accounts.set_password(store, teacher["id"], "a whole new passphrase")
    assert accounts.authenticate(store, "teacher", PASSWORD) is None
    assert accounts.authenticate(store, "teacher", "a whole new passphrase") is not None
    with pytest.raises(Invalid, match="at least 12"):
        accounts.set_password(store, teacher["id"], "tiny")
    with pytest.raises(NotFound, match="passback users list"):
        accounts.set_password(store, 999_999, PASSWORD)

    with pytest.raises(Conflict, match="only admin"):  # nobody would be left to manage the district
        accounts.set_admin(store, boss["id"], False)
    with pytest.raises(Conflict, match="only admin"):
        accounts.disable_user(store, boss["id"])
    assert accounts.set_admin(store, teacher["id"], True)["is_admin"]
    assert not accounts.set_admin(store, boss["id"], False)["is_admin"]

    disabled = accounts.disable_user(store, boss["id"])
    assert disabled["disabled"]
    assert accounts.authenticate(store, "boss", PASSWORD) is None
    assert not accounts.disable_user(store, boss["id"], disabled=False)["disabled"]
    assert accounts.authenticate(store, "boss", PASSWORD) is not None


def test_an_lti_launch_finds_or_makes_its_user(store: Store) -> None:
    issuer = "https://canvas.instructure.com"
    first = accounts.user_for_launch(store, issuer=issuer, subject="sub-1", name="Ana Rivera", login="arivera")
    assert first["username"] == "lti:arivera" and first["display_name"] == "Ana Rivera" and not first["has_password"]
    assert (first["lti_issuer"], first["lti_subject"]) == (issuer, "sub-1")

    again = accounts.user_for_launch(store, issuer=issuer, subject="sub-1", name="Ana Rivera-Lopez", login="arivera")
    assert again["id"] == first["id"] and again["display_name"] == "Ana Rivera-Lopez"
    # Another person with the same login (another platform, say) gets a username of their own.
    other = accounts.user_for_launch(store, issuer="https://other.example", subject="sub-1", name=None, login="arivera")
    assert other["username"] == "lti:arivera-2" and other["id"] != first["id"]
    third = accounts.user_for_launch(store, issuer=issuer, subject="sub-3", name=None, login="arivera")
    assert third["username"] == "lti:arivera-3"
    nameless = accounts.user_for_launch(store, issuer=issuer, subject="sub-9", name=None, login=None)
    assert nameless["username"] == "lti:sub-9" and nameless["display_name"] == "sub-9"

    assert accounts.authenticate(store, "lti:arivera", "") is None  # no password: no way in but the launch
    accounts.add_user(store, username="admin", password=PASSWORD, is_admin=True)
    accounts.disable_user(store, first["id"])
    with pytest.raises(accounts.AccountDisabled, match="disabled"):
        accounts.user_for_launch(store, issuer=issuer, subject="sub-1", name="Ana", login="arivera")
    with pytest.raises(Invalid, match="issuer"):
        accounts.user_for_launch(store, issuer="", subject="x", name=None, login=None)


def test_course_access(store: Store, tmp_path: Path) -> None:
    lms = _source(store, tmp_path)
    admin = accounts.add_user(store, username="admin", password=PASSWORD, is_admin=True)
    teacher = accounts.add_user(store, username="teacher", password=PASSWORD)
    student = accounts.user_for_launch(store, issuer="https://lms", subject="s", name="Sam", login="sam")

    assert accounts.can_access(admin, lms, "101", store) and accounts.role_in(admin, lms, "101", store) == "Administrator"
    assert not accounts.can_access(teacher, lms, "101", store) and accounts.role_in(teacher, lms, "101", store) is None

    accounts.grant_course(store, user_id=teacher["id"], source_connection_id=lms, course_id="101", role="TeachingAssistant",
                          granted_by="admin")
    accounts.grant_course(store, user_id=teacher["id"], source_connection_id=lms, course_id="101", role="Instructor",
                          granted_by="lti")  # a second grant changes the role; there is still one row
    accounts.grant_course(store, user_id=student["id"], source_connection_id=lms, course_id="101", role="Learner",
                          granted_by="lti")
    granted = accounts.courses_of(store, teacher["id"])
    assert [(g["source_connection_id"], g["course_id"], g["role"], g["granted_by"]) for g in granted] == [
        (lms, "101", "Instructor", "lti")]
    assert granted[0]["at"].tzinfo is not None
    assert accounts.can_access(teacher, lms, "101", store) and accounts.role_in(teacher, lms, "101", store) == "Instructor"
    assert not accounts.can_access(teacher, lms, "102", store)
    assert not accounts.can_access(student, lms, "101", store)  # a Learner sees no grade sync
    assert accounts.role_in(student, lms, "101", store) == "Learner"
    assert not accounts.can_access({**teacher, "disabled": True}, lms, "101", store)

    assert accounts.revoke_course(store, user_id=teacher["id"], source_connection_id=lms, course_id="101")
    assert not accounts.revoke_course(store, user_id=teacher["id"], source_connection_id=lms, course_id="101")
    assert not accounts.can_access(teacher, lms, "101", store) and accounts.courses_of(store, teacher["id"]) == []

    with pytest.raises(Invalid, match="Instructor, TeachingAssistant, Administrator, Learner"):
        accounts.grant_course(store, user_id=teacher["id"], source_connection_id=lms, course_id="101", role="Owner",
                              granted_by="admin")
    with pytest.raises(NotFound, match="no connection"):
        accounts.grant_course(store, user_id=teacher["id"], source_connection_id=lms + 100, course_id="101",
                              role="Instructor", granted_by="admin")
    assert accounts.source_connection_id(store, "lms") == lms
    with pytest.raises(NotFound, match="passback connections"):
        accounts.source_connection_id(store, "nope")


def test_api_tokens_are_shown_once_and_kept_as_a_hash(store: Store) -> None:
    user = accounts.add_user(store, username="scripts", password=PASSWORD)
    other = accounts.add_user(store, username="other", password=PASSWORD)
    token = accounts.issue_token(store, user_id=user["id"], name="nightly-export")
    assert token.startswith("pb_") and len(token) == 3 + 43
    with store.engine.connect() as db:
        rows = [dict(r._mapping) for r in db.execute(sa.select(api_tokens))]
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(rows)

    assert [t["last_used_at"] for t in accounts.list_tokens(store, user["id"])] == [None]
    assert accounts.user_for_token(store, token) == user
    listed = accounts.list_tokens(store, user["id"])
    assert [(t["name"], t["revoked_at"]) for t in listed] == [("nightly-export", None)]
    assert listed[0]["last_used_at"] is not None
    assert token not in repr(listed) and "token_hash" not in listed[0]
    assert accounts.user_for_token(store, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert accounts.user_for_token(store, token.removeprefix("pb_")) is None
    assert accounts.user_for_token(store, "") is None

    assert not accounts.revoke_token(store, listed[0]["id"], user_id=other["id"])  # not theirs to revoke
    assert accounts.user_for_token(store, token) is not None
    assert accounts.revoke_token(store, listed[0]["id"], user_id=user["id"])
    assert not accounts.revoke_token(store, listed[0]["id"])
    assert accounts.user_for_token(store, token) is None
    assert accounts.list_tokens(store, user["id"])[0]["revoked_at"] is not None

    second = accounts.issue_token(store, user_id=user["id"], name="grades-report")
    accounts.add_user(store, username="admin", password=PASSWORD, is_admin=True)
    accounts.disable_user(store, user["id"])
    assert accounts.user_for_token(store, second) is None  # a disabled user's tokens open nothing
    with pytest.raises(Invalid, match="Name the token"):
        accounts.issue_token(store, user_id=other["id"], name=" ")
    with pytest.raises(NotFound):
        accounts.issue_token(store, user_id=999_999, name="x")


def test_no_password_or_token_is_logged(store: Store) -> None:
    with capture_logs() as logs:
        user = accounts.add_user(store, username="quiet", password=PASSWORD, is_admin=True)
        accounts.authenticate(store, "quiet", PASSWORD)
        accounts.authenticate(store, "quiet", "the wrong password")
        accounts.set_password(store, user["id"], "another long passphrase")
        token = accounts.issue_token(store, user_id=user["id"], name="ci")
        accounts.user_for_token(store, token)
    shown = repr(logs)
    assert logs and "user_added" in shown and "token_issued" in shown
    for secret in (PASSWORD, "the wrong password", "another long passphrase", token, token.removeprefix("pb_"),
                   hashlib.sha256(token.encode()).hexdigest(), "$argon2"):
        assert secret not in shown
